"""The same recipes with composer and with the original Content Composer
(0.1.2), against one fake OpenAI-compatible server on 127.0.0.1.

Per recipe and tool: wall time, CPU time (user + system of the child, from
`os.wait4`) and peak memory (max RSS of the child), the median over the
iterations, and their ratio (original / composer), all measured in the
same run. Every run is checked: exit code, the final output present and
not an error text, and the number of model calls the fake server saw.
Recipes the original cannot express as written, or gets wrong, are run
too and what it did is recorded (not timed).

  python compare.py [--smoke] [--iterations N] [--latency-ms MS] [--write-doc]

`--smoke`: one iteration of tiny recipes at zero latency, no doc; exits
non-zero when either side errors. The full mode writes its figures into
docs/benchmarks.md between `<!-- compare:start -->` and
`<!-- compare:end -->`.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = {"provider": "openai", "model": "gpt-4o-mini"}


# ---------------------------------------------------------------- recipes

def recipes(sizes):
    """name -> {ours, theirs, inputs, calls, output, what}."""
    n_map, n_fan, n_chain = sizes["map"], sizes["fan"], sizes["chain"]
    topics = ",".join(f"topic {i}" for i in range(n_map))
    out = {}

    single = {
        "name": "bench_single",
        "user_inputs": [{"id": "topic", "label": "Topic", "type": "string", "default": "otters"}],
        "nodes": [{"id": "write", "type": "language_task", "model": MODEL,
                   "prompt": "Write one line about {{ topic }}."}],
        "final_outputs": ["write"],
    }
    out["single"] = dict(ours=single, theirs=single, inputs={"topic": "otters"}, calls=1,
                         output="write", what="one language task")

    # Map: the original maps over a list of mappings only, and has no way to
    # make one from an input but a function; composer maps over a template.
    ours_map = {
        "name": "bench_map",
        "user_inputs": [{"id": "topics", "label": "Topics", "type": "string", "default": topics}],
        "nodes": [
            {"id": "drafts", "type": "map", "over": "{{ topics.split(',') }}",
             "task": {"type": "language_task", "model": MODEL,
                      "prompt": "Write a paragraph about {{ item }}.", "output": "draft"},
             "output": "drafts"},
            {"id": "synth", "type": "language_task", "model": MODEL,
             "prompt": "Combine:\n{% for d in drafts %}- {{ d }}\n{% endfor %}"},
        ],
        "edges": ["drafts to synth"],
        "final_outputs": ["synth"],
    }
    theirs_map = {
        "name": "bench_map",
        "user_inputs": [{"id": "topics", "label": "Topics", "type": "string", "default": topics}],
        "nodes": [
            {"id": "split", "type": "function_task", "function_identifier": "split_topics",
             "input": {"topics": "topics"}},
            {"id": "drafts", "type": "map", "over": "split.items",
             "task": {"type": "language_task", "model": MODEL, "input": {"topic": "topic"},
                      "prompt": "Write a paragraph about {{ topic }}.", "output": "draft"},
             "output": "drafts"},
            {"id": "synth", "type": "language_task", "model": MODEL, "input": {"drafts": "drafts"},
             "prompt": "Combine:\n{% for d in drafts %}- {{ d }}\n{% endfor %}"},
        ],
        "edges": ["split to drafts", "drafts to synth"],
        "final_outputs": ["synth"],
    }
    out["map"] = dict(ours=ours_map, theirs=theirs_map, inputs={"topics": topics},
                      calls=n_map + 1, output="synth",
                      what=f"map of {n_map} language tasks, then a synthesis")

    # Fan-out: composer starts every node without an incoming edge; the
    # original starts ONE entry node, so it needs a common root node.
    branches = [{"id": f"t{i}", "type": "language_task", "model": MODEL,
                 "prompt": f"Angle {i} on {{{{ topic }}}}."} for i in range(n_fan)]
    join = {"id": "join", "type": "language_task", "model": MODEL,
            "prompt": "Join: " + " | ".join(f"{{{{ t{i} }}}}" for i in range(n_fan))}
    ours_fan = {
        "name": "bench_fanout",
        "user_inputs": [{"id": "topic", "label": "Topic", "type": "string", "default": "otters"}],
        "nodes": branches + [join],
        "edges": [f"t{i} to join" for i in range(n_fan)],
        "final_outputs": ["join"],
    }
    theirs_fan = dict(ours_fan)
    theirs_fan["nodes"] = [{"id": "root", "type": "function_task", "function_identifier": "start",
                            "input": {"text": "topic"}}] + branches + [join]
    theirs_fan["edges"] = [f"root to t{i}" for i in range(n_fan)] + ours_fan["edges"]
    out["fanout"] = dict(ours=ours_fan, theirs=theirs_fan, inputs={"topic": "otters"},
                         calls=n_fan + 1, output="join",
                         what=f"fan-out of {n_fan} independent language tasks and a join")

    chain_nodes = [{"id": "f0", "type": "function_task", "function_identifier": "echo",
                    "input": {"text": "{{ title }} 0"}}]
    for i in range(1, n_chain):
        chain_nodes.append({"id": f"f{i}", "type": "function_task", "function_identifier": "echo",
                            "input": {"text": f"{{{{ f{i - 1}.text }}}} {i}"}})
    chain = {
        "name": "bench_chain",
        "user_inputs": [{"id": "title", "label": "Title", "type": "string", "default": "Hello World"}],
        "nodes": chain_nodes,
        "edges": [f"f{i - 1} to f{i}" for i in range(1, n_chain)],
        "final_outputs": [f"f{n_chain - 1}"],
    }
    out["chain"] = dict(ours=chain, theirs=chain, inputs={"title": "Hello World"}, calls=0,
                        output=f"f{n_chain - 1}",
                        what=f"chain of {n_chain} function tasks (composer: `echo` of the Rust "
                             "test plugin `hostile.wasm`, a WebAssembly component in a fresh "
                             "sandbox per call; original: a Python function)")
    return out


def findings_recipes(sizes):
    """Recipes whose handling by the original is checked and recorded."""
    n = sizes["findings"]
    topics = ",".join(f"topic {i}" for i in range(n))
    item_x = {
        "name": "finding_item_x",
        "user_inputs": [{"id": "topics", "label": "Topics", "type": "string", "default": topics}],
        "nodes": [
            {"id": "split", "type": "function_task", "function_identifier": "split_topics",
             "input": {"topics": "topics"}},
            {"id": "drafts", "type": "map", "over": "split.items",
             "task": {"type": "language_task", "model": MODEL, "input": {"topic": "{{ item.topic }}"},
                      "prompt": "Write about {{ topic }}.", "output": "draft"},
             "output": "drafts"},
        ],
        "edges": ["split to drafts"],
        "final_outputs": ["drafts"],
    }
    no_edges = {
        "name": "finding_no_edges",
        "user_inputs": [{"id": "topic", "label": "Topic", "type": "string", "default": "otters"}],
        "nodes": [
            {"id": "a", "type": "language_task", "model": MODEL, "prompt": "Start on {{ topic }}."},
            {"id": "b", "type": "language_task", "model": MODEL, "prompt": "Go on from: {{ a }}"},
            {"id": "c", "type": "language_task", "model": MODEL, "prompt": "Finish: {{ b }}"},
        ],
        "final_outputs": ["c"],
    }
    fan = recipes(sizes)["fanout"]["ours"]
    return {
        "item_x": dict(recipe=item_x, inputs={"topics": topics}, calls=n,
                       what=f"map whose task input is `{{{{ item.topic }}}}` ({n} items)",
                       ours=False),
        "no_edges": dict(recipe=no_edges, inputs={"topic": "otters"}, calls=3,
                         what="three dependent language tasks and no `edges` (the chain default)",
                         ours=True),
        "fanout_no_root": dict(recipe=fan, inputs={"topic": "otters"}, calls=sizes["fan"] + 1,
                               what=f"{sizes['fan']} entry nodes (no common root) and a join",
                               ours=True),
    }


# ---------------------------------------------------------------- running

class Fake:
    def __init__(self, latency_ms):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fake_openai.py"), "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise SystemExit(f"the fake server did not start: {line!r}")
        self.base = "http://" + line.split()[-1].strip()

    def post(self, path):
        urllib.request.urlopen(urllib.request.Request(self.base + path, data=b"{}", method="POST"),
                               timeout=10).read()

    def stats(self):
        """(completions, most in flight at once) since the last reset."""
        with urllib.request.urlopen(self.base + "/stats", timeout=10) as r:
            s = json.load(r)
        return s["completions"], s["max_in_flight"]

    def completions(self):
        return self.stats()[0]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_child(cmd, cwd, env, timeout):
    """(exit code, stdout, stderr, wall s, cpu s, max RSS bytes) of one child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"), wall,
                usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


class Tools:
    def __init__(self, composer_bin, venv_python, work, fake):
        self.composer = composer_bin
        self.python = venv_python
        self.work = work
        env = dict(os.environ)
        env.update({
            "OPENAI_API_KEY": "sk-bench-not-a-real-key",
            "OPENAI_BASE_URL": fake.base + "/v1",
            "COMPOSER_PLUGIN_PATH": str(work / "plugins"),
            # No plugins installed in this machine's user folder.
            "XDG_DATA_HOME": str(work / "xdg"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        })
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.pop(k, None)
        self.env = env
        (work / "custom_functions").mkdir(parents=True, exist_ok=True)
        # Our function: `echo` of the Rust test plugin, alone in its folder;
        # compiled code is cached across runs (and across comparisons).
        (work / "plugins").mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "plugins" / "dist" / "test" / "hostile.wasm", work / "plugins" / "hostile.wasm")
        cache = ROOT / ".composer" / "bench-plugin-cache"
        (work / "composer.toml").write_text(f'[plugins]\npaths = []\ncache_dir = "{cache}"\n')
        shutil.copy(HERE / "custom_functions_bench.py", work / "custom_functions" / "bench_functions.py")
        shutil.copy(HERE / "cc_run.py", work / "cc_run.py")

    def write(self, name, recipe, inputs):
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        ipath = self.work / f"{name}.inputs.json"
        ipath.write_text(json.dumps(inputs))
        return path, ipath

    def ours(self, recipe, inputs, timeout):
        cmd = [self.composer, "run", str(recipe), "--inputs", str(inputs), "--json", "--no-cache",
               "--out", str(self.work / "out")]
        return run_child(cmd, self.work, self.env, timeout)

    def theirs(self, recipe, inputs, timeout):
        cmd = [self.python, "cc_run.py", str(recipe), str(inputs)]
        return run_child(cmd, self.work, self.env, timeout)


def check(result, output_key, expected_calls, calls):
    """A problem with a run, or None."""
    code, stdout, stderr, *_ = result
    if code != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        return f"exit code {code}: {tail}"
    try:
        outputs = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else None
    except ValueError:
        try:
            outputs = json.loads(stdout)
        except ValueError:
            return f"stdout is not JSON: {stdout[:200]!r}"
    if not isinstance(outputs, dict) or output_key not in outputs:
        return f"final output `{output_key}` missing: {str(outputs)[:200]}"
    value = outputs[output_key]
    text = json.dumps(value) if not isinstance(value, str) else value
    if not value or "ERROR:" in text:
        return f"final output `{output_key}` is an error or empty: {text[:200]}"
    if calls != expected_calls:
        return f"{calls} model calls, expected {expected_calls}"
    return None


def median(values):
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- report

def fmt_ratio(a, b):
    return f"{a / b:.1f} ×" if b else "—"


def render(results, findings, meta):
    lines = []
    lines.append(f"`bash bench/compare.sh` ({meta['mode']}), {meta['date']}: composer "
                 f"`{meta['composer']}` ({meta['profile']} build) against Content Composer "
                 f"{meta['cc_version']} (Python {meta['python']}), both calling one fake "
                 f"OpenAI-compatible server on 127.0.0.1 that answers after "
                 f"{meta['latency_ms']:g} ms. Machine: {meta['machine']}. Median of "
                 f"{meta['iterations']} runs per tool{'' if meta['mode'] == '--smoke' else ' after one untimed run each'}, "
                 f"interleaved; composer runs `composer run --json --no-cache` (a fresh process "
                 f"each time, recording the run in its store), the original `execute_workflow` "
                 f"in a fresh Python process with its log at WARNING; CPU is user + system time "
                 f"of the tool's process, memory its peak RSS; ratio = original / composer.")
    lines.append("")
    lines.append("Where the recipes differ, it is because the original needs it: its map "
                 "goes over a list of mappings only, so a Python function (`split_topics`) "
                 "makes one from the input, where composer maps over `{{ topics.split(',') }}`; "
                 "it starts a graph at ONE entry node, so its fan-out hangs off a root "
                 "function node (`start`), where composer starts every node without an "
                 "incoming edge. Every timed run is checked: exit code, final output present "
                 "and not an error text, and the model calls the fake server saw.")
    lines.append("")
    lines.append("| recipe | composer wall | original wall | × | composer CPU | original CPU | × "
                 "| composer RSS | original RSS | × | most calls at once (composer / original) |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        o, t = r["ours"], r["theirs"]
        lines.append(
            f"| {r['what']} | {o['wall']:.3f} s | {t['wall']:.3f} s | {fmt_ratio(t['wall'], o['wall'])} "
            f"| {o['cpu']:.3f} s | {t['cpu']:.3f} s | {fmt_ratio(t['cpu'], o['cpu'])} "
            f"| {o['rss'] / 1e6:.0f} MB | {t['rss'] / 1e6:.0f} MB | {fmt_ratio(t['rss'], o['rss'])} "
            f"| {o['overlap']} / {t['overlap']} |")
    problems = [(name, side, p) for name, r in results.items() for side in ("ours", "theirs")
                for p in r[side]["problems"]]
    if problems:
        lines.append("")
        lines.append("Runs that did not check out:")
        for name, side, p in problems:
            who = "composer" if side == "ours" else "original"
            lines.append(f"- {name}, {who}: {p}")
    lines.append("")
    lines.append("What the original does with recipes it cannot express as written "
                 "(each run once, the model calls counted by the fake server):")
    lines.append("")
    for name, f in findings.items():
        lines.append(f"- **{f['what']}**: {f['observed']}")
    return "\n".join(lines)


def describe_finding(result, calls, expected):
    code, stdout, stderr, *_ = result
    try:
        stdout = json.dumps(json.loads(stdout), ensure_ascii=False)
    except ValueError:
        pass
    if code != 0:
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        return f"exit code {code} after {calls} of {expected} model calls (`{tail[:160]}`)"
    out = stdout.strip()
    if len(out) > 240:
        out = out[:240] + "…"
    return f"exit code 0, {calls} of {expected} model calls, outputs `{out}`"


def write_doc(body):
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    start, end = "<!-- compare:start -->", "<!-- compare:end -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    a, b = text.find(start), text.find(end)
    if a != -1 and b > a:
        text = text[:a] + section + text[b + len(end):]
    else:
        text = text.rstrip() + "\n\n## Against the original Content Composer\n\n" + section + "\n"
    path.write_text(text)
    print(f"written to {path.relative_to(ROOT)} (compare)")


# ---------------------------------------------------------------- main

def composer_binary():
    given = os.environ.get("COMPOSER_BIN")
    if given:
        return given
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    for profile in ("release", "debug"):
        candidate = target / profile / "composer"
        if candidate.exists():
            return str(candidate)
    raise SystemExit("no composer binary: build it (cargo build --release) or set COMPOSER_BIN")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--write-doc", action="store_true",
                        help="write the figures into docs/benchmarks.md (the default without --smoke)")
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    smoke = args.smoke
    iterations = args.iterations or (1 if smoke else 5)
    latency = args.latency_ms if args.latency_ms is not None else (0.0 if smoke else 50.0)
    sizes = ({"map": 4, "fan": 3, "chain": 4, "findings": 3} if smoke
             else {"map": 32, "fan": 8, "chain": 20, "findings": 4})
    timeout = 120 if smoke else 600
    composer = composer_binary()
    venv_python = sys.executable
    fake = Fake(latency)
    # Outside the repository: composer looks for plugins in `plugins/` of
    # the recipe's folder and every folder above it.
    work = Path(tempfile.mkdtemp(prefix="composer-compare-"))
    failed = False
    results = {}
    try:
        tools = Tools(composer, venv_python, work, fake)
        for name, r in recipes(sizes).items():
            ours_path, ours_inputs = tools.write(f"{name}.ours", r["ours"], r["inputs"])
            theirs_path, theirs_inputs = tools.write(f"{name}.theirs", r["theirs"], r["inputs"])
            samples = {"ours": [], "theirs": []}
            problems = {"ours": [], "theirs": []}
            if not smoke:
                # One untimed run each first: compiled plugin code and
                # Python bytecode caches are warm for the timed runs.
                tools.ours(ours_path, ours_inputs, timeout)
                tools.theirs(theirs_path, theirs_inputs, timeout)
            for i in range(iterations):
                for side in ("ours", "theirs"):
                    fake.post("/reset")
                    if side == "ours":
                        res = tools.ours(ours_path, ours_inputs, timeout)
                    else:
                        res = tools.theirs(theirs_path, theirs_inputs, timeout)
                    calls, overlap = fake.stats()
                    problem = check(res, r["output"], r["calls"], calls)
                    if problem:
                        problems[side].append(f"run {i + 1}: {problem}")
                    samples[side].append(res[3:] + (overlap,))
            entry = {"what": r["what"]}
            for side in ("ours", "theirs"):
                s = samples[side]
                entry[side] = {"wall": median([x[0] for x in s]), "cpu": median([x[1] for x in s]),
                               "rss": median([x[2] for x in s]),
                               "overlap": max(x[3] for x in s), "problems": problems[side]}
                if problems[side]:
                    failed = True
            results[name] = entry
            o, t = entry["ours"], entry["theirs"]
            print(f"{name:8} composer {o['wall']:.3f}s wall {o['cpu']:.3f}s cpu {o['rss'] / 1e6:.0f}MB"
                  f" | original {t['wall']:.3f}s wall {t['cpu']:.3f}s cpu {t['rss'] / 1e6:.0f}MB",
                  flush=True)
            for side in ("ours", "theirs"):
                for p in problems[side]:
                    print(f"  {'composer' if side == 'ours' else 'original'}: {p}", flush=True)

        findings = {}
        if latency > 0:
            n = sizes["map"]
            t, o = results["map"]["theirs"]["overlap"], results["map"]["ours"]["overlap"]
            findings["map_sequential"] = dict(
                what=f"map of {n} language tasks (`execution_mode` defaults to `parallel`)",
                observed=f"original: at most {t} model call(s) in flight at once "
                         f"({'its map runs the items one after another' if t <= 1 else 'items overlap'}); "
                         f"composer: at most {o}")
        for name, f in findings_recipes(sizes).items():
            path, inputs = tools.write(f"finding_{name}", f["recipe"], f["inputs"])
            fake.post("/reset")
            res = tools.theirs(path, inputs, timeout)
            calls = fake.completions()
            observed = "original: " + describe_finding(res, calls, f["calls"])
            if f["ours"]:
                fake.post("/reset")
                res = tools.ours(path, inputs, timeout)
                ours_calls = fake.completions()
                observed += "; composer: " + describe_finding(res, ours_calls, f["calls"])
            findings[name] = dict(what=f["what"], observed=observed)
            print(f"finding {name}: {observed}", flush=True)

        version = subprocess.run([composer, "--version"], capture_output=True, text=True).stdout.strip()
        try:
            from importlib.metadata import version as pkg_version
            cc_version = pkg_version("content-composer")
        except Exception:  # noqa: BLE001 - only for the label
            cc_version = "?"
        meta = {
            "mode": "--smoke" if smoke else "full",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "composer": version,
            "profile": "release" if "/release/" in composer else "debug" if "/debug/" in composer else "given",
            "cc_version": cc_version,
            "python": platform.python_version(),
            "latency_ms": latency,
            "iterations": iterations,
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}",
        }
        body = render(results, findings, meta)
        print()
        print(body)
        if (args.write_doc or not smoke) and not args.no_doc:
            write_doc(body)
    finally:
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)
    checked = 2 * iterations * len(results)
    bad = sum(len(r[side]["problems"]) for r in results.values() for side in ("ours", "theirs"))
    if failed:
        print("\nerror: a run did not check out (see above)", file=sys.stderr)
    # The plain closing line test runners print: each checked run counts.
    print(f"compare: {checked - bad} passed, {bad} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
