// Binds a <textarea> to a Y.Text: local typing becomes the smallest
// delete+insert (common prefix/suffix), remote changes update the value and
// move the caret with the text around it.

import * as Y from "yjs";

export function bindTextarea(ytext: Y.Text, area: HTMLTextAreaElement): () => void {
  const origin = { binding: area }; // marks our own transactions
  area.value = ytext.toString();

  const onInput = () => {
    const before = ytext.toString();
    const after = area.value;
    if (before === after) return;
    let start = 0;
    while (start < before.length && start < after.length && before[start] === after[start]) start++;
    // Never cut a character in two: emoji share their first UTF-16 unit,
    // and an edit between a surrogate pair's halves leaves both texts
    // broken (yrs then even encodes the note inconsistently).
    if (start > 0 && isHighSurrogate(before.charCodeAt(start - 1))) start--;
    let endB = before.length;
    let endA = after.length;
    while (endB > start && endA > start && before[endB - 1] === after[endA - 1]) {
      endB--;
      endA--;
    }
    if (endB < before.length && isLowSurrogate(before.charCodeAt(endB))) {
      endB++;
      endA++;
    }
    ytext.doc!.transact(() => {
      if (endB > start) ytext.delete(start, endB - start);
      if (endA > start) ytext.insert(start, after.slice(start, endA));
    }, origin);
  };

  const onChange = (ev: Y.YTextEvent, tr: Y.Transaction) => {
    if (tr.origin === origin) return;
    let selStart = area.selectionStart;
    let selEnd = area.selectionEnd;
    // Shift the selection by what was inserted or deleted before it.
    let index = 0;
    for (const op of ev.delta) {
      if (op.retain !== undefined) index += op.retain;
      else if (typeof op.insert === "string") {
        const n = op.insert.length;
        if (index <= selStart) selStart += n;
        if (index < selEnd) selEnd += n;
        index += n;
      } else if (op.delete !== undefined) {
        const n = op.delete;
        if (index < selStart) selStart -= Math.min(n, selStart - index);
        if (index < selEnd) selEnd -= Math.min(n, selEnd - index);
      }
    }
    const focused = document.activeElement === area;
    area.value = ytext.toString();
    if (focused) area.setSelectionRange(selStart, selEnd);
  };

  area.addEventListener("input", onInput);
  ytext.observe(onChange);
  return () => {
    area.removeEventListener("input", onInput);
    ytext.unobserve(onChange);
  };
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
