// The notes editor: CodeMirror 6 bound to the note's Y.Text by
// y-codemirror.next, so collaborators' cursors and selections show with
// their names and colours, and undo (Ctrl+Z) only undoes one's own edits
// (a Y.UndoManager tracking local changes only).

import * as Y from "yjs";
import type { Awareness } from "y-protocols/awareness";
import { EditorView, basicSetup } from "codemirror";
import { markdown } from "@codemirror/lang-markdown";
import { Compartment, EditorState } from "@codemirror/state";
import { keymap } from "@codemirror/view";
import { yCollab, yUndoManagerKeymap } from "y-codemirror.next";

export interface NoteEditor {
  /** The editor's text (tests and exports read it). */
  text(): string;
  setReadOnly(readOnly: boolean): void;
  readOnly(): boolean;
  focus(): void;
  destroy(): void;
}

/** Colours for collaborators' cursors, readable on white (WCAG AA for the name labels). */
const COLOURS = ["#1d5fa7", "#b42318", "#217a3c", "#8e24aa", "#b45309", "#0e7490", "#be185d", "#4d7c0f"];

/** A stable colour per user id. */
export function colourOf(id: string): { color: string; colorLight: string } {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  const color = COLOURS[h % COLOURS.length];
  return { color, colorLight: `${color}33` };
}

export function bindEditor(parent: HTMLElement, ytext: Y.Text, awareness: Awareness, label: string): NoteEditor {
  const undoManager = new Y.UndoManager(ytext);
  const editable = new Compartment();
  let readOnly = false;
  const lock = (ro: boolean) => [EditorState.readOnly.of(ro), EditorView.editable.of(!ro)];
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keymap.of([...yUndoManagerKeymap]),
        basicSetup,
        markdown(),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ id: "note-content", "aria-label": label }),
        editable.of(lock(false)),
        yCollab(ytext, awareness, { undoManager }),
      ],
    }),
  });
  return {
    text: () => view.state.doc.toString(),
    readOnly: () => readOnly,
    setReadOnly(ro: boolean) {
      if (ro === readOnly) return;
      readOnly = ro;
      view.dispatch({ effects: editable.reconfigure(lock(ro)) });
    },
    focus: () => view.focus(),
    destroy() {
      view.destroy();
      undoManager.destroy();
    },
  };
}
