// `markup`: Markdown to HTML, slugs and outlines, for content pipelines
// (publish a draft, link to its sections, check its structure).
//
// `./composer-plugin.js` comes with composer (plugin-sdk/js):
// `composer plugin build` puts it next to this file.

import { register, log, PluginError } from "./composer-plugin.js";
import { render, headings, slugify } from "./markdown.js";

const MARKDOWN = {
  type: "object",
  required: ["markdown"],
  properties: { markdown: { type: "string" } },
};

register(
  "markdown_to_html",
  {
    description: "Renders `markdown` to HTML (headings get ids); text is escaped",
    pure: true,
    tags: ["markdown", "html"],
    inputSchema: MARKDOWN,
  },
  ({ markdown }) => {
    const html = render(markdown);
    log.debug(`rendered ${markdown.length} characters of Markdown`);
    return { html, headings: headings(markdown).length };
  },
);

register(
  "slugify",
  {
    description: "Turns `text` (or each of `texts`) into a URL slug",
    pure: true,
    tags: ["text", "url"],
    inputSchema: {
      type: "object",
      properties: {
        text: { type: "string" },
        texts: { type: "array", items: { type: "string" } },
        separator: { type: "string", enum: ["-", "_", "."] },
      },
    },
  },
  ({ text, texts, separator = "-" }) => {
    if (text === undefined && texts === undefined) {
      throw new PluginError("give `text` or `texts`");
    }
    const out = {};
    if (text !== undefined) out.slug = slugify(text, separator);
    if (texts !== undefined) out.slugs = texts.map((t) => slugify(t, separator));
    return out;
  },
);

register(
  "outline_markdown",
  {
    description: "The heading tree of `markdown`, with slugs and a Markdown table of contents",
    pure: true,
    tags: ["markdown", "structure"],
    inputSchema: {
      type: "object",
      required: ["markdown"],
      properties: {
        markdown: { type: "string" },
        max_level: { type: "integer", minimum: 1, maximum: 6 },
      },
    },
  },
  // Async on purpose: async functions work like any other.
  async ({ markdown, max_level = 3 }) => {
    await Promise.resolve();
    const found = headings(markdown).filter((h) => h.level <= max_level);
    const top = found.length ? Math.min(...found.map((h) => h.level)) : 1;
    const root = { children: [] };
    const stack = [{ level: 0, node: root }];
    for (const h of found) {
      const node = { title: h.text, slug: h.id, level: h.level, children: [] };
      while (stack[stack.length - 1].level >= h.level) stack.pop();
      stack[stack.length - 1].node.children.push(node);
      stack.push({ level: h.level, node });
    }
    const toc = found
      .map((h) => `${"  ".repeat(h.level - top)}- [${h.text}](#${h.id})`)
      .join("\n");
    return { outline: root.children, toc, count: found.length };
  },
);
