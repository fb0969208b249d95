"""A fake OpenAI-compatible chat-completions server for the comparison.

One process, threaded (one thread per connection, keep-alive), on
127.0.0.1. `POST /v1/chat/completions` sleeps `--latency-ms`, then answers
a valid completion (with `usage`) that echoes the start of the prompt.
`GET /v1/models` lists one model. `GET /stats` gives the number of
completions served and the most calls in flight at once since the last
`POST /reset`, so the harness can check how many model calls each run
made and how many overlapped.

Prints `listening on 127.0.0.1:PORT` on stdout once it accepts requests.
Python standard library only.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {"completions": 0, "in_flight": 0, "max_in_flight": 0}


def prompt_of(body):
    parts = []
    for message in body.get("messages", []):
        content = message.get("content", "")
        if isinstance(content, list):
            content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        parts.append(str(content))
    return "\n".join(parts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    latency = 0.0

    def log_message(self, format, *args):  # quiet
        pass

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.reply(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "owned_by": "bench"}]})
        elif self.path == "/stats":
            with LOCK:
                self.reply(200, dict(STATS))
        else:
            self.reply(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path == "/reset":
            with LOCK:
                STATS.update(completions=0, in_flight=0, max_in_flight=0)
            self.reply(200, {"ok": True})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.reply(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            self.reply(400, {"error": {"message": f"bad JSON: {e}"}})
            return
        with LOCK:
            STATS["in_flight"] += 1
            STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
        if self.latency > 0:
            time.sleep(self.latency)
        with LOCK:
            STATS["in_flight"] -= 1
        prompt = prompt_of(body)
        content = "ok: " + " ".join(prompt.split())[:60]
        prompt_tokens = max(1, len(prompt) // 4)
        completion_tokens = max(1, len(content) // 4)
        with LOCK:
            STATS["completions"] += 1
            n = STATS["completions"]
        self.reply(200, {
            "id": f"chatcmpl-bench-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "system_fingerprint": "fp_bench",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        })


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    Handler.latency = args.latency_ms / 1000.0
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
