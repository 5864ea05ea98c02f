// The class agenda in the web app: the coming weeks' events, day by day,
// live; teachers of the class (and staff) add and cancel events. Pupils
// and parents read it (a parent's classes are their children's).

import type { PreauClient } from "../src/client.js";
import { AgendaView, agendaAdd, agendaCancel, agendaList, type AgendaItem } from "../src/agenda.js";
import { el, errorText, isModerator, isUnknownRoom, roomTitle, toast, type RoomHooks } from "./common.js";
import type { OfflineStore } from "./offline.js";

const DAY = 24 * 3600_000;
/** What the view shows: from the start of today, this many days. */
const SPAN_DAYS = 56;

const dayFmt = new Intl.DateTimeFormat("fr-FR", { weekday: "long", day: "numeric", month: "long" });
const timeFmt = new Intl.DateTimeFormat("fr-FR", { hour: "2-digit", minute: "2-digit" });

export class AgendaRoomView {
  root: HTMLElement;
  private listEl = el("div", { className: "agenda-days" });
  private notice = el("p", { className: "notice", hidden: true });
  private form?: HTMLFormElement;
  private submit?: HTMLButtonElement;
  private view: AgendaView;
  private started = false;
  /** Shown from the offline copy, not joined yet: nothing can be changed. */
  private offline = false;
  private unsubscribe: Array<() => void> = [];

  constructor(
    private client: PreauClient,
    private room: string,
    private hooks: RoomHooks,
    private store: OfflineStore | null = null,
  ) {
    const from = startOfDay(Date.now());
    this.view = new AgendaView(room, from, from + SPAN_DAYS * DAY);
    this.root = el("section", { className: "agenda", "data-room": room }, el("h2", { textContent: roomTitle(room) }), this.notice);
    if (isModerator(client.user?.role ?? "")) {
      // Folded: on a phone the form would push the agenda off the screen.
      this.form = this.addForm();
      this.root.append(el("details", { className: "agenda-add" }, el("summary", { textContent: "Ajouter un événement" }), this.form));
    }
    this.root.append(el("div", { className: "scroller" }, this.listEl));
  }

  show(): void {
    if (this.started) return;
    this.started = true;
    this.unsubscribe.push(
      this.client.on("event", (ev) => {
        if (this.view.apply(ev)) {
          if (this.view.stale) void this.reload();
          else {
            this.render();
            this.save();
          }
        }
      }),
      // A long disconnection: the events missed are not replayed, so reload.
      this.client.on("reset", ({ room }) => {
        if (room === this.room) void this.reload();
      }),
    );
    void this.start();
  }

  dispose(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  private async start(): Promise<void> {
    // Not connected (the app started offline, or the network is gone): the
    // items kept on the device until the join, which waits for the
    // connection; then the range is loaded again, as at any start.
    if (this.client.state !== "open") await this.restore();
    try {
      // Joined for the live events (a cancellation shows at once).
      await this.client.join(this.room);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (isUnknownRoom(err)) return this.hooks.unknown();
      if (code === "forbidden") return this.hooks.forbidden();
      if (code !== "already_joined") this.setNotice(errorText(err));
    } finally {
      this.setOffline(false);
    }
    await this.reload();
  }

  private async restore(): Promise<void> {
    this.setOffline(true);
    const copy = await this.store?.loadRoom(this.room);
    if (copy?.kind !== "agenda") {
      this.listEl.replaceChildren(el("p", { className: "empty", textContent: "Non disponible hors ligne : cet agenda n'avait pas été chargé." }));
      return;
    }
    // Only what still falls in the range shown (the copy may be from an earlier day).
    this.view.load({ room: this.room, items: copy.items.filter((i) => (i.ends ?? i.starts) >= this.view.from && i.starts < this.view.to), more: false });
    this.render();
  }

  private setOffline(offline: boolean): void {
    this.offline = offline;
    if (this.submit) this.submit.disabled = offline;
    if (offline) this.setNotice("Hors ligne : lecture seule jusqu'au retour du réseau.");
    else if (this.notice.textContent?.startsWith("Hors ligne")) this.setNotice("");
  }

  /** Keeps the items shown on the device (soon: saves are grouped), once loaded from the server. */
  private save(): void {
    this.store?.saveRoom(this.room, () => (this.offline ? null : { kind: "agenda", items: this.view.list() }));
  }

  private async reload(): Promise<void> {
    try {
      const ok = await agendaList(this.client, this.room, this.view.from, this.view.to, 500);
      const fresh = new AgendaView(this.room, this.view.from, this.view.to);
      fresh.load(ok);
      this.view = fresh;
      this.render();
      this.save();
    } catch (err) {
      this.setNotice(errorText(err));
    }
  }

  private render(): void {
    const items = this.view.list();
    if (items.length === 0) {
      this.listEl.replaceChildren(el("p", { className: "empty", textContent: "Rien de prévu pour les huit prochaines semaines." }));
      return;
    }
    const days = new Map<number, AgendaItem[]>();
    for (const item of items) {
      const day = Math.max(startOfDay(item.starts), this.view.from);
      days.set(day, [...(days.get(day) ?? []), item]);
    }
    this.listEl.replaceChildren(
      ...[...days].map(([day, dayItems]) =>
        el("section", { className: "agenda-day" }, el("h3", { textContent: dayTitle(day) }), el("ul", { className: "agenda-items" }, ...dayItems.map((i) => this.itemEl(i)))),
      ),
    );
  }

  private itemEl(item: AgendaItem): HTMLElement {
    const when = item.allDay ? "Toute la journée" : item.ends ? `${timeFmt.format(item.starts)} – ${timeFmt.format(item.ends)}` : timeFmt.format(item.starts);
    const li = el(
      "li",
      { className: item.cancelled ? "agenda-item cancelled" : "agenda-item", "data-item": item.item },
      el("p", { className: "when", textContent: when }),
      el("p", { className: "title" }, item.title, item.cancelled ? el("span", { className: "cancelled-tag", textContent: "Annulé" }) : ""),
    );
    if (item.place) li.append(el("p", { className: "place", textContent: `Lieu : ${item.place}` }));
    if (item.details) li.append(el("p", { className: "details", textContent: item.details }));
    if (item.cancelled && item.reason) li.append(el("p", { className: "details", textContent: `Motif : ${item.reason}` }));
    li.append(el("p", { className: "by", textContent: `Ajouté par ${item.by.name}` }));
    if (this.form && !item.cancelled && !this.offline) {
      const cancel = el("button", { type: "button", className: "secondary cancel", textContent: "Annuler l'événement" });
      cancel.addEventListener("click", () => void this.cancel(item));
      li.append(cancel);
    }
    return li;
  }

  private addForm(): HTMLFormElement {
    const today = new Date();
    const title = el("input", { id: "agenda-title", required: true, maxLength: 200, autocomplete: "off" });
    const date = el("input", { id: "agenda-date", type: "date", required: true, value: isoDate(today) });
    const allDay = el("input", { id: "agenda-all-day", type: "checkbox" });
    const start = el("input", { id: "agenda-start", type: "time", value: "08:00" });
    const end = el("input", { id: "agenda-end", type: "time", value: "09:00" });
    const place = el("input", { id: "agenda-place", maxLength: 200, autocomplete: "off" });
    const details = el("textarea", { id: "agenda-details", rows: 2 });
    const submit = el("button", { type: "submit", textContent: "Ajouter" });
    this.submit = submit;
    const error = el("p", { className: "error", role: "alert" });
    allDay.addEventListener("change", () => (start.disabled = end.disabled = allDay.checked));
    const field = (label: string, input: HTMLElement, id: string) => el("div", { className: "field" }, el("label", { htmlFor: id, textContent: label }), input);
    const form = el(
      "form",
      { className: "agenda-form" },
      field("Intitulé", title, "agenda-title"),
      el("div", { className: "row" }, field("Date", date, "agenda-date"), field("Début", start, "agenda-start"), field("Fin", end, "agenda-end")),
      el("div", { className: "row check" }, allDay, el("label", { htmlFor: "agenda-all-day", textContent: "Toute la journée" })),
      field("Lieu (facultatif)", place, "agenda-place"),
      field("Détails (facultatif)", details, "agenda-details"),
      submit,
      error,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      const day = date.valueAsDate ? localDay(date.value) : NaN;
      if (!title.value.trim() || Number.isNaN(day)) {
        error.textContent = "Indiquez un intitulé et une date.";
        return;
      }
      const starts = allDay.checked ? day : day + minutes(start.value) * 60_000;
      const ends = allDay.checked ? undefined : day + minutes(end.value) * 60_000;
      if (ends !== undefined && ends < starts) {
        error.textContent = "La fin doit suivre le début.";
        return;
      }
      submit.disabled = true;
      try {
        await agendaAdd(this.client, this.room, { title: title.value.trim(), starts, ends, allDay: allDay.checked, place: place.value.trim() || undefined, details: details.value.trim() || undefined }, crypto.randomUUID());
        title.value = place.value = details.value = "";
        toast("Événement ajouté.");
      } catch (err) {
        error.textContent = errorText(err);
      } finally {
        submit.disabled = this.offline;
      }
    });
    return form;
  }

  private async cancel(item: AgendaItem): Promise<void> {
    const reason = prompt(`Annuler « ${item.title} » ? Motif (facultatif) :`);
    if (reason === null) return;
    try {
      await agendaCancel(this.client, this.room, item.item, reason.trim() || undefined);
    } catch (err) {
      toast(errorText(err), "error");
    }
  }

  private setNotice(text: string): void {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }
}

function startOfDay(ts: number): number {
  const d = new Date(ts);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** `2026-12-07` as local midnight. */
function localDay(value: string): number {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(y, m - 1, d).getTime();
}

function isoDate(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function minutes(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number);
  return (h || 0) * 60 + (m || 0);
}

/** « Aujourd'hui, samedi 5 décembre », « Demain, … », « Lundi 7 décembre ». */
function dayTitle(day: number): string {
  const today = startOfDay(Date.now());
  const name = dayFmt.format(new Date(day));
  if (day === today) return `Aujourd'hui, ${name}`;
  if (day === startOfDay(today + DAY + 3600_000)) return `Demain, ${name}`;
  return capitalize(name);
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
