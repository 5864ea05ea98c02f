// A note's Markdown preview, with formulas ($…$ and $$…$$) set by KaTeX
// for maths and physics notes. Pupils write the notes: the HTML marked
// produces is sanitised by DOMPurify before it reaches the page, and no
// image is fetched.

import { Marked } from "marked";
import markedKatex from "marked-katex-extension";
import DOMPurify from "dompurify";

const marked = new Marked(markedKatex({ throwOnError: false, nonStandard: true }));

/** KaTeX's stylesheet and fonts, copied into dist/katex/ by the build; loaded once. */
function loadKatexCss(): void {
  if (document.getElementById("katex-css")) return;
  const link = document.createElement("link");
  link.id = "katex-css";
  link.rel = "stylesheet";
  link.href = new URL("katex/katex.min.css", document.baseURI).href;
  document.head.append(link);
}

/**
 * The note as sanitised HTML. Images are not fetched: a pupil's note could
 * otherwise make every reader's browser call any server (their address, the
 * time they read it). Each becomes a link saying what it shows.
 */
export function renderMarkdown(text: string): DocumentFragment {
  loadKatexCss();
  const html = marked.parse(text, { async: false }) as string;
  const fragment = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true });
  for (const img of [...fragment.querySelectorAll("img")]) {
    const link = document.createElement("a");
    const src = img.getAttribute("src") ?? "";
    if (/^https?:/i.test(src)) link.href = src;
    link.rel = "noopener noreferrer";
    link.target = "_blank";
    link.textContent = `[image : ${img.getAttribute("alt") || "sans description"}]`;
    img.replaceWith(link);
  }
  return fragment;
}
