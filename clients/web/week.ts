// The week as the diary and the agenda show it (Monday to Sunday, French
// wording), and the subjects' colours. Its own small module because the
// agenda view is in the app's first load and the diary is a chunk loaded
// on demand: both use these without the agenda pulling the diary in.

import type { Day } from "../src/homework.js";
import { el } from "./common.js";

// ---- days -------------------------------------------------------------------

/** Local midnight of a day. */
export function dateOf(day: Day): Date {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d);
}

export function dayOf(d: Date): Day {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

export function today(): Day {
  return dayOf(new Date());
}

export function addDays(day: Day, n: number): Day {
  const d = dateOf(day);
  return dayOf(new Date(d.getFullYear(), d.getMonth(), d.getDate() + n));
}

/** The Monday of the week of `day` (French weeks start on Monday). */
export function mondayOf(day: Day): Day {
  const d = dateOf(day);
  return addDays(day, -((d.getDay() + 6) % 7));
}

const longFmt = new Intl.DateTimeFormat("fr-FR", { weekday: "long", day: "numeric", month: "long" });

/** « mardi 8 décembre ». */
export function longDay(day: Day): string {
  return longFmt.format(dateOf(day));
}

export function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// ---- subjects -----------------------------------------------------------------

/**
 * Each subject keeps its colour from week to week and from pupil to pupil.
 * The usual subjects of a collège or lycée have their own, all different;
 * any other takes one from its name. Every colour holds white text at
 * 4.5:1 or more (WCAG AA; the least is 4.99), and the name is always
 * written: the colour helps find a subject, it never says it alone.
 */
const SUBJECT_COLOURS = ["#1d4ed8", "#b91c1c", "#047857", "#6d28d9", "#b45309", "#0e7490", "#be185d", "#4d7c0f", "#c2410c", "#334155", "#0f766e", "#a21caf"];
/** By the start of the subject's name, without case or accents. */
const KNOWN_SUBJECTS: Array<[RegExp, string]> = [
  [/^math/, "#1d4ed8"],
  [/^fran/, "#b91c1c"],
  [/^(hist|geo|hg\b|emc)/, "#b45309"],
  [/^(angl|lv|langue)/, "#6d28d9"],
  [/^(esp|ital|port)/, "#c2410c"],
  [/^(allem|russe|chin|arab)/, "#334155"],
  [/^(svt|sciences de la vie|bio)/, "#047857"],
  [/^(phys|chim|pc\b)/, "#0e7490"],
  [/^(techn|sciences de l'ing|nsi|snt|info)/, "#0f766e"],
  [/^(eps|sport|educ.* phys)/, "#4d7c0f"],
  [/^(art|dessin)/, "#a21caf"],
  [/^(mus|educ.* mus)/, "#be185d"],
  [/^(latin|grec|lca|philo|ses)/, "#9f1239"],
];

export function subjectColour(subject: string): string {
  // « Français » and « francais » are one subject: case and accents aside.
  const key = subject.normalize("NFD").replace(/[\u0300-\u036f]/g, "").trim().toLowerCase();
  for (const [re, colour] of KNOWN_SUBJECTS) if (re.test(key)) return colour;
  let h = 5381;
  for (let i = 0; i < key.length; i++) h = ((h * 33) ^ key.charCodeAt(i)) >>> 0;
  return SUBJECT_COLOURS[h % SUBJECT_COLOURS.length];
}

export function subjectTag(subject: string): HTMLElement {
  const tag = el("span", { className: "subject", textContent: subject });
  tag.style.background = subjectColour(subject);
  return tag;
}

// ---- the week shown -----------------------------------------------------------

/** « Semaine précédente », « Cette semaine », « Semaine suivante », and which week it is. */
export class WeekNav {
  root: HTMLElement;
  private label = el("p", { className: "week-label", role: "status" });
  private thisWeek: HTMLButtonElement;
  monday: Day = mondayOf(today());

  constructor(private onChange: (monday: Day) => void) {
    const prev = el("button", { type: "button", className: "secondary", textContent: "Semaine précédente" });
    this.thisWeek = el("button", { type: "button", className: "secondary", textContent: "Cette semaine" });
    const next = el("button", { type: "button", className: "secondary", textContent: "Semaine suivante" });
    prev.addEventListener("click", () => this.go(addDays(this.monday, -7)));
    next.addEventListener("click", () => this.go(addDays(this.monday, 7)));
    this.thisWeek.addEventListener("click", () => this.go(mondayOf(today())));
    this.root = el("div", { className: "week-nav" }, el("div", { className: "week-buttons" }, prev, this.thisWeek, next), this.label);
    this.render();
  }

  get sunday(): Day {
    return addDays(this.monday, 6);
  }

  go(monday: Day): void {
    if (monday === this.monday) return;
    this.set(monday);
    this.onChange(monday);
  }

  /** Shows `monday`'s week without loading it (an offline copy's week). */
  set(monday: Day): void {
    this.monday = monday;
    this.render();
  }

  private render(): void {
    const current = mondayOf(today());
    const which = this.monday === current ? "Cette semaine" : this.monday === addDays(current, 7) ? "Semaine prochaine" : this.monday === addDays(current, -7) ? "Semaine dernière" : "Semaine";
    this.label.textContent = `${which} : du ${longDay(this.monday)} au ${longDay(this.sunday)}`;
    this.thisWeek.disabled = this.monday === current;
  }
}
