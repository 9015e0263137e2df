// The labelling web app: one page, served by the queue service itself, talking Connect to
// labelgrid.v1.QueueService on the same origin (see README "The labelling web app").

import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  QueueService,
  type Item,
  type Progress,
  type Project,
  type TrainingRun,
} from "./gen/labelgrid/v1/queue_pb";
import { asPicture, decodeArray, formatValue } from "./ndarray";
import { renderMarkdown } from "./markdown";
import { OWNER_TOKEN_KEY, startOwner } from "./owner";
import "./style.css";

// -- state -------------------------------------------------------------------------------

const KEYS = { name: "labelgrid.worker", token: "labelgrid.token", left: "labelgrid.left" };
const DEPTH = 2; // leases held: the item shown and one prefetched
const MAX_TABLE = 500;

const params = new URLSearchParams(location.search);
// the project owner's view (owner.ts) instead of the labeller's page
const ownerView = params.get("view") === "owner" || location.hash === "#owner";
if (params.has("token")) {
  // a link with a token: keep it (an admin's for the owner's view), and take it out of the
  // address bar and history
  localStorage.setItem(ownerView ? OWNER_TOKEN_KEY : KEYS.token, params.get("token") ?? "");
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
}
const projectName = params.get("project") ?? "";
let token = localStorage.getItem(KEYS.token) ?? "";
let worker = localStorage.getItem(KEYS.name) ?? "";
let project: Project | null = null;

let held: Item[] = []; // live leases, held[0] is on screen
let shown: Item | null = null;
const sent = new Set<string>(); // "id:token" of items whose label was sent
let keymap = new Map<string, string>(); // key -> option
let selected = new Set<string>(); // multi-label selection
let pendingClick: number | null = null; // when the click/key that moved on happened
let chain: Promise<unknown> = Promise.resolve();
let steps = 0; // RPC steps queued or running (a label on its way may bring the next item)
let started = false;
let refilling: Promise<void> | null = null;
let watchAbort: AbortController | null = null;
let lastProgress: Progress | null = null;
let runsFetchedAt = 0;
// the newest training run's id as of the last ListTrainingRuns (-1: not asked yet)
let runsKnown = -1n;
let runsAsking = false; // a ListTrainingRuns in flight: the next look waits for its answer
let runsTimer: number | undefined;
const RUNS_EVERY_MS = 3000;
// a new run reaches every open page at once: each asks within this spread, not all together
const RUNS_SPREAD_MS = 2000;
let latestRun: TrainingRun | null = null;

// what the tests read
const timings: number[] = [];
(window as unknown as { labelgrid: object }).labelgrid = {
  timings,
  held: () => held.map((i) => String(i.id)),
  shown: () => (shown ? String(shown.id) : null),
};

// -- Connect ------------------------------------------------------------------------------

const auth: Interceptor = (next) => async (req) => {
  if (token) req.header.set("authorization", `Bearer ${token}`);
  return await next(req);
};
const transport = createConnectTransport({
  baseUrl: location.origin,
  useBinaryFormat: true,
  interceptors: [auth],
});
const client = createClient(QueueService, transport);
// labels must land even when the tab closes right after the click: keepalive requests
// outlive the page
const durable = createClient(
  QueueService,
  createConnectTransport({
    baseUrl: location.origin,
    useBinaryFormat: true,
    interceptors: [auth],
    fetch: (input, init) => globalThis.fetch(input, { ...init, keepalive: true }),
  }),
);

// -- elements -----------------------------------------------------------------------------

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const el = {
  title: $("project-title"),
  who: $("who"),
  whoName: $("who-name"),
  change: $<HTMLButtonElement>("change-name"),
  error: $("error"),
  projects: $("projects"),
  projectList: $("project-list"),
  nameForm: $<HTMLFormElement>("name-form"),
  nameInput: $<HTMLInputElement>("name-input"),
  labeller: $("labeller"),
  instructions: $<HTMLDetailsElement>("instructions"),
  instructionsBody: $("instructions-body"),
  bar: $<HTMLProgressElement>("progress-bar"),
  progressText: $("progress-text"),
  mine: $("mine"),
  model: $("model"),
  item: $("item"),
  others: $("others"),
  options: $("options"),
  otherForm: $<HTMLFormElement>("other-form"),
  otherInput: $<HTMLInputElement>("other-input"),
  submitSelected: $<HTMLButtonElement>("submit-selected"),
  skip: $<HTMLButtonElement>("skip"),
  undo: $<HTMLButtonElement>("undo"),
  status: $("status"),
};

// -- errors -------------------------------------------------------------------------------

function codeName(code: Code): string {
  return (Code[code] ?? "unknown").replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

function showError(err: unknown): void {
  const e = ConnectError.from(err);
  el.error.textContent = `${codeName(e.code)}: ${e.rawMessage}`;
  el.error.dataset.code = codeName(e.code);
  el.error.hidden = false;
}

function clearError(): void {
  el.error.hidden = true;
  el.error.textContent = "";
  delete el.error.dataset.code;
}

/** Run one RPC-using step after the previous ones (labels, skips and undos keep their
 * order); a success clears the error shown, a failure shows it. */
function serial(step: () => Promise<void>): Promise<unknown> {
  steps++;
  chain = chain
    .then(step)
    .then(clearError, showError)
    .finally(() => {
      steps--;
      if (!shown) display(null); // "loading" becomes "nothing to label" if nothing came
    });
  return chain;
}

function setStatus(text: string): void {
  el.status.textContent = text;
}

// -- hotkeys ------------------------------------------------------------------------------

/** A key per option: the digit itself when every option is one digit (option "8" <- key 8),
 * else 1-9 then 0 in order (the first ten options). */
export function hotkeys(options: string[]): Map<string, string> {
  const keys = new Map<string, string>();
  if (options.length && options.every((o) => /^[0-9]$/.test(o))) {
    for (const o of options) keys.set(o, o);
  } else {
    options.slice(0, 10).forEach((o, i) => keys.set(i < 9 ? String(i + 1) : "0", o));
  }
  return keys;
}

function typing(target: EventTarget | null): boolean {
  const t = target as HTMLElement | null;
  return (
    !!t &&
    t.isConnected &&
    t.getClientRects().length > 0 && // a field hidden with its form does not count
    (t instanceof HTMLInputElement ||
      t instanceof HTMLTextAreaElement ||
      t instanceof HTMLSelectElement ||
      t.isContentEditable)
  );
}

document.addEventListener("keydown", (e) => {
  if (!project || el.labeller.hidden) return;
  if (e.defaultPrevented || e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
  if (typing(e.target) || typing(document.activeElement)) return; // never while typing
  const option = keymap.get(e.key);
  if (option !== undefined) {
    e.preventDefault();
    choose(option, e.timeStamp);
  } else if (e.key === " ") {
    e.preventDefault();
    skip(e.timeStamp);
  } else if (e.key === "Backspace") {
    e.preventDefault();
    undo();
  } else if (e.key === "Enter" && project.multiLabel) {
    e.preventDefault();
    submitSelection(e.timeStamp);
  }
});

// -- showing an item ----------------------------------------------------------------------

function table(rows: [string, string][], head?: [string, string]): HTMLTableElement {
  const t = document.createElement("table");
  t.className = "values";
  if (head) {
    const tr = t.createTHead().insertRow();
    for (const h of head) {
      const th = document.createElement("th");
      th.textContent = h;
      tr.append(th);
    }
  }
  const body = t.createTBody();
  for (const [k, v] of rows) {
    const tr = body.insertRow();
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = k;
    tr.append(th);
    tr.insertCell().textContent = v;
  }
  return t;
}

function jsonText(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function render(item: Item): HTMLElement {
  const box = document.createElement("div");
  const input = item.input?.kind;
  try {
    if (input?.case === "array") {
      const { dtype, shape, data } = input.value;
      const dims = shape.map(Number);
      const arr = decodeArray(dtype, dims, data);
      const pic = asPicture(arr, dtype);
      if (pic) {
        const canvas = document.createElement("canvas");
        canvas.width = pic.width;
        canvas.height = pic.height;
        canvas.className = "picture";
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-label", `image ${pic.height} by ${pic.width}`);
        canvas.getContext("2d")!.putImageData(new ImageData(pic.rgba, pic.width, pic.height), 0, 0);
        canvas.style.aspectRatio = `${pic.width} / ${pic.height}`;
        box.append(canvas);
      } else if (dims.length === 0) {
        box.append(Object.assign(document.createElement("p"), { className: "text", textContent: formatValue(arr, 0) }));
      } else {
        const n = Math.min(arr.values.length, MAX_TABLE);
        const rows: [string, string][] = [];
        const strides = dims.map((_, i) => dims.slice(i + 1).reduce((a, b) => a * b, 1));
        for (let i = 0; i < n; i++) {
          const index = dims.length === 1 ? String(i) : strides.map((s, d) => Math.floor(i / s) % dims[d]).join(", ");
          rows.push([index, formatValue(arr, i)]);
        }
        box.append(table(rows, ["index", dtype]));
        if (n < arr.values.length) box.append(`… ${arr.values.length - n} more values (shape ${dims.join(" × ")})`);
      }
    } else if (input?.case === "text") {
      box.append(Object.assign(document.createElement("p"), { className: "text", textContent: input.value }));
    } else if (input?.case === "uri") {
      let url: URL | null = null;
      try {
        url = new URL(input.value);
      } catch {
        url = null;
      }
      if (url && (url.protocol === "http:" || url.protocol === "https:")) {
        const img = document.createElement("img");
        img.src = url.href;
        img.alt = url.href;
        img.referrerPolicy = "no-referrer";
        img.className = "picture";
        box.append(img);
      } else {
        box.append(Object.assign(document.createElement("p"), { className: "text", textContent: input.value }));
      }
    } else if (input?.case === "json") {
      const value: unknown = JSON.parse(input.value);
      if (value && typeof value === "object" && !Array.isArray(value)) {
        box.append(table(Object.entries(value).map(([k, v]) => [k, jsonText(v)])));
      } else if (Array.isArray(value)) {
        box.append(table(value.map((v, i) => [String(i), jsonText(v)])));
      } else {
        box.append(Object.assign(document.createElement("p"), { className: "text", textContent: jsonText(value) }));
      }
    } else {
      box.append("(this item has no input)");
    }
  } catch (err) {
    box.append(`cannot show this item: ${(err as Error).message}`);
  }
  return box;
}

function display(item: Item | null, previous: string[] = []): void {
  shown = item;
  selected = new Set(previous.filter(() => project?.multiLabel));
  el.item.replaceChildren();
  el.others.replaceChildren();
  el.others.hidden = true;
  for (const b of el.options.querySelectorAll<HTMLButtonElement>("button")) {
    b.classList.toggle("previous", previous.includes(b.dataset.label ?? ""));
    b.setAttribute("aria-pressed", String(selected.has(b.dataset.label ?? "")));
  }
  const enabled = !!item;
  for (const b of el.labeller.querySelectorAll<HTMLButtonElement>("button.option, #skip, #submit-selected")) {
    b.disabled = !enabled;
  }
  el.otherInput.disabled = !enabled;
  if (!item) {
    delete el.item.dataset.itemId;
    const busy = !!refilling || steps > 0;
    document.body.dataset.state = busy ? "loading" : "empty";
    el.item.append(
      Object.assign(document.createElement("p"), {
        className: "empty",
        textContent: busy ? "Loading the next item…" : "Nothing to label right now. New items will show up here.",
      }),
    );
    return;
  }
  el.item.dataset.itemId = String(item.id);
  document.body.dataset.state = "ready";
  el.item.append(render(item));
  if (item.others.length) {
    el.others.hidden = false;
    el.others.append("In review: the others said ");
    item.others.forEach((o, i) => {
      if (i) el.others.append(" · ");
      const b = document.createElement("strong");
      b.textContent = o.workerId;
      el.others.append(b, `: ${o.labels.join(", ")}`);
    });
  }
  if (previous.length) setStatus(`Undone: you had labelled it ${previous.join(", ")}`);
  const t0 = pendingClick;
  pendingClick = null;
  if (t0 !== null) requestAnimationFrame(() => timings.push(performance.now() - t0));
}

function addHeld(items: Item[]): void {
  for (const item of items) {
    if (!held.some((h) => h.id === item.id)) held.push(item);
  }
  if (!shown && held.length) display(held[0]);
}

/** Keep DEPTH leases: the item on screen and the next one, so a click shows it at once. */
function refill(): Promise<void> {
  if (refilling) return refilling;
  const want = DEPTH - held.length;
  if (want <= 0 || !project) return Promise.resolve();
  refilling = (async () => {
    try {
      const reply = await client.pop({ project: projectName, workerId: worker, n: want });
      addHeld(reply.items);
    } finally {
      refilling = null;
      if (!shown) display(null);
    }
  })();
  return refilling;
}

function advance(t0: number): Item | null {
  const item = shown;
  if (!item) return null;
  held = held.filter((h) => h !== item);
  pendingClick = t0;
  display(held[0] ?? null);
  return item;
}

// -- labelling ----------------------------------------------------------------------------

function readKey(): string {
  return `labelgrid.read.${projectName}`;
}

function instructionsDigest(): string {
  let h = 5381;
  for (const c of project?.instructions ?? "") h = ((h * 33) ^ c.charCodeAt(0)) >>> 0;
  return h.toString(36);
}

function submit(labels: string[], t0: number): void {
  const item = shown;
  if (!item || !labels.length) return;
  const key = `${item.id}:${item.leaseToken}`;
  if (sent.has(key)) return; // a second click on the same item does nothing
  sent.add(key);
  if (project?.instructions) localStorage.setItem(readKey(), instructionsDigest());
  setStatus(`Labelled ${labels.join(", ")}`);
  // queued before the next item is drawn, so an empty screen says "loading" meanwhile
  serial(async () => {
    const reply = await durable.submit({
      project: projectName,
      itemId: item.id,
      leaseToken: item.leaseToken,
      workerId: worker,
      labels,
      popNext: true,
    });
    if (reply.next) addHeld([reply.next]);
    await refill();
  });
  advance(t0);
}

function choose(option: string, t0: number): void {
  if (!project || !shown) return;
  if (project.multiLabel) {
    if (selected.has(option)) selected.delete(option);
    else selected.add(option);
    const b = el.options.querySelector<HTMLButtonElement>(`button[data-label="${CSS.escape(option)}"]`);
    b?.setAttribute("aria-pressed", String(selected.has(option)));
    return;
  }
  submit([option], t0);
}

function submitSelection(t0: number): void {
  const extra = el.otherInput.value.trim();
  const labels = [...selected, ...(extra ? [extra] : [])];
  if (!labels.length) {
    setStatus("Choose at least one label first");
    return;
  }
  el.otherInput.value = "";
  submit(labels, t0);
}

function skip(t0: number): void {
  const item = shown;
  if (!item) return;
  setStatus("Skipped");
  serial(async () => {
    await refill(); // first, so the skipped item is not handed straight back
    await durable.release({ project: projectName, itemId: item.id, leaseToken: item.leaseToken, workerId: worker });
  });
  advance(t0);
}

function undo(): void {
  serial(async () => {
    const reply = await durable.undo({ project: projectName, workerId: worker });
    const item = reply.item!;
    held = [item, ...held.filter((h) => h.id !== item.id)];
    display(item, reply.labels);
  });
}

/** Give back every lease this page holds (shown and prefetched) when it goes away; keepalive
 * requests are sent even though the page is being unloaded. */
function releaseAll(): void {
  // a reload of this tab finds what it showed (sessionStorage outlives a reload, not a tab)
  sessionStorage.setItem(KEYS.left, JSON.stringify({ at: Date.now(), ids: held.map((i) => String(i.id)) }));
  for (const item of held) {
    fetch("/labelgrid.v1.QueueService/Release", {
      method: "POST",
      keepalive: true,
      headers: {
        "content-type": "application/json",
        "connect-protocol-version": "1",
        ...(token ? { authorization: `Bearer ${token}` } : {}),
      },
      body: JSON.stringify({
        project: projectName,
        itemId: String(item.id),
        leaseToken: item.leaseToken,
        workerId: worker,
      }),
    }).catch(() => undefined);
  }
  held = [];
}

if (!ownerView) addEventListener("pagehide", releaseAll);
// back from the back/forward cache: the leases were given back, start afresh
addEventListener("pageshow", (e) => {
  if (e.persisted) location.reload();
});

// -- progress, model, instructions --------------------------------------------------------

function ago(date: Date): string {
  const s = Math.max(0, Math.round((Date.now() - date.getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return date.toLocaleString();
}

function showModel(): void {
  const run = latestRun;
  if (!run) {
    el.model.textContent = "Model: not trained yet";
    return;
  }
  const when = run.startedAt?.seconds ? `, trained ${ago(timestampDate(run.startedAt))}` : "";
  if (run.score !== undefined) {
    const spread = run.scoreStd !== undefined ? ` ± ${run.scoreStd.toFixed(3)}` : "";
    el.model.textContent = `Model score ${run.score.toFixed(3)}${spread} on ${run.nLabels} labels${when}`;
  } else {
    el.model.textContent = `Model: ${run.status.replace(/_/g, " ")} (${run.message || "no score"})${when}`;
  }
  el.model.dataset.score = run.score !== undefined ? String(run.score) : "";
}

/** Fetch the training runs soon: at once, or when RUNS_EVERY_MS have passed since the last
 * look (progress tells the newest run's id, so the page asks only when there is a new one). */
function lookForRuns(): void {
  if (runsTimer !== undefined || runsAsking) return;
  const spread = runsKnown < 0n ? 0 : Math.random() * RUNS_SPREAD_MS; // the first look at once
  const wait = Math.max(spread, runsFetchedAt + RUNS_EVERY_MS - Date.now());
  runsTimer = window.setTimeout(() => {
    runsTimer = undefined;
    void fetchRuns().catch(() => undefined);
  }, wait);
}

async function fetchRuns(): Promise<void> {
  runsFetchedAt = Date.now();
  const wanted = lastProgress?.lastTrainingRunId ?? -1n;
  runsAsking = true;
  try {
    const reply = await client.listTrainingRuns({ project: projectName, newest: 1 });
    runsKnown = wanted;
    latestRun = reply.runs.at(-1) ?? null;
    showModel();
  } finally {
    runsAsking = false;
    // a run recorded while the page asked: look again (after RUNS_EVERY_MS)
    if (lastProgress && lastProgress.lastTrainingRunId !== runsKnown) lookForRuns();
  }
}

function showProgress(p: Progress): void {
  lastProgress = p;
  const total = Number(p.total);
  const labelled = Number(p.labelled);
  el.bar.max = Math.max(total, 1);
  el.bar.value = labelled;
  const parts = [`${labelled} / ${total} labelled (${(p.fraction * 100).toFixed(1)}%)`];
  if (p.inReview) parts.push(`${p.inReview} in review`);
  parts.push(`${p.available} to go`);
  el.progressText.textContent = parts.join(" · ");
  const mine = p.workers.find((w) => w.workerId === worker)?.labelled ?? 0n;
  el.mine.textContent = `You: ${mine} label${mine === 1n ? "" : "s"}`;
  el.mine.dataset.count = String(mine);
  if (!shown && !held.length && p.available > 0n) void refill().catch(showError);
  // the trainer recorded a run since the page last asked
  if (p.lastTrainingRunId !== runsKnown) lookForRuns();
}

async function watchProgress(): Promise<void> {
  watchAbort?.abort(); // a new name: the stream asks for this worker's count, not the last one's
  for (;;) {
    const abort = new AbortController();
    watchAbort = abort;
    try {
      for await (const reply of client.watchProgress({ project: projectName, workerId: worker }, { signal: abort.signal })) {
        if (reply.progress) showProgress(reply.progress);
      }
    } catch (err) {
      if (abort.signal.aborted) return;
      if (ConnectError.from(err).code === Code.NotFound) return showError(err);
    }
    if (abort.signal.aborted) return;
    await new Promise((r) => setTimeout(r, 2000)); // the server restarted: follow again
  }
}

// a hidden tab needs no live stream (and browsers allow few connections per host)
document.addEventListener("visibilitychange", () => {
  if (!project || !worker) return;
  if (document.visibilityState === "hidden") watchAbort?.abort();
  else if (watchAbort?.signal.aborted) void watchProgress();
});

// -- setting up ---------------------------------------------------------------------------

function buildOptions(p: Project): void {
  keymap = hotkeys(p.options);
  const keyOf = new Map([...keymap].map(([k, o]) => [o, k]));
  el.options.replaceChildren();
  for (const option of p.options) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "option";
    b.dataset.label = option;
    const key = keyOf.get(option);
    const label = document.createElement("span");
    label.textContent = option;
    b.append(label);
    if (key !== undefined && key !== option) {
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      kbd.setAttribute("aria-hidden", "true");
      b.append(kbd);
    }
    if (key !== undefined) {
      b.setAttribute("aria-keyshortcuts", key);
      b.title = `key ${key}`;
    }
    b.addEventListener("click", (e) => {
      b.blur();
      if (e.detail > 1) return; // the second click of a double click
      choose(option, e.timeStamp);
    });
    el.options.append(b);
  }
  const free = p.allowOther || !p.options.length;
  el.otherForm.hidden = !free;
  el.otherInput.placeholder = p.options.length ? "Other… (Enter)" : "Label… (Enter)";
  el.submitSelected.hidden = !p.multiLabel;
}

el.otherForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const value = el.otherInput.value.trim();
  if (project?.multiLabel) return submitSelection(e.timeStamp);
  if (!value) return;
  el.otherInput.value = "";
  el.otherInput.blur();
  submit([value], e.timeStamp);
});
el.otherInput.addEventListener("keydown", (e) => {
  if (e.key === "Escape") el.otherInput.blur();
});
el.skip.addEventListener("click", (e) => {
  el.skip.blur();
  if (e.detail <= 1) skip(e.timeStamp);
});
el.undo.addEventListener("click", () => {
  el.undo.blur();
  undo();
});
el.submitSelected.addEventListener("click", (e) => {
  el.submitSelected.blur();
  submitSelection(e.timeStamp);
});
el.change.addEventListener("click", () => {
  releaseAll();
  display(null);
  watchAbort?.abort();
  localStorage.removeItem(KEYS.name);
  worker = "";
  askName();
});

function askName(): void {
  el.labeller.hidden = true;
  el.who.hidden = true;
  el.nameForm.hidden = false;
  document.body.dataset.state = "name";
  el.nameInput.focus();
}

el.nameForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const name = el.nameInput.value.trim();
  if (!name) return;
  worker = name;
  localStorage.setItem(KEYS.name, name);
  el.nameInput.blur();
  el.nameForm.hidden = true;
  void start();
});

async function start(): Promise<void> {
  el.who.hidden = false;
  el.whoName.textContent = worker;
  el.labeller.hidden = false;
  display(null);
  try {
    // reloaded: the page before gave its leases back a moment ago; let those calls land,
    // then take the same items again, in the same order
    const left = JSON.parse(sessionStorage.getItem(KEYS.left) ?? "null") as { at: number; ids: string[] } | null;
    sessionStorage.removeItem(KEYS.left);
    const before = left && Date.now() - left.at < 3000 ? left.ids : [];
    if (before.length) await new Promise((r) => setTimeout(r, 300));
    // a returning labeller gets their own live leases back first, then new items
    const mine = await client.listLeases({ project: projectName, workerId: worker });
    const popped = DEPTH > mine.items.length
      ? (await client.pop({ project: projectName, workerId: worker, n: DEPTH - mine.items.length })).items
      : [];
    const rank = (i: Item) => {
      const k = before.indexOf(String(i.id));
      return k < 0 ? before.length : k;
    };
    held = [];
    addHeld([...mine.items, ...popped].sort((a, b) => rank(a) - rank(b)));
    clearError();
  } catch (err) {
    showError(err);
  }
  if (!shown) display(null);
  void watchProgress(); // its first message has the newest run's id: the page asks for it
  if (started) return; // a change of name starts again: one timer is enough
  started = true;
  setInterval(() => {
    showModel(); // "trained … ago" moves on
  }, 10000);
}

async function listProjects(): Promise<void> {
  document.body.dataset.state = "projects";
  el.projects.hidden = false;
  try {
    const reply = await client.listProjects({});
    el.projectList.replaceChildren();
    for (const p of reply.projects) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `?project=${encodeURIComponent(p.name)}`;
      a.textContent = p.name;
      li.append(a);
      el.projectList.append(li);
    }
    if (!reply.projects.length) el.projectList.append("No projects yet.");
  } catch (err) {
    showError(err);
  }
}

async function main(): Promise<void> {
  if (!projectName) return listProjects();
  el.title.textContent = projectName;
  document.title = `${projectName} · labelgrid`;
  try {
    project = (await client.getProject({ project: projectName })).project ?? null;
  } catch (err) {
    document.body.dataset.state = "error";
    return showError(err);
  }
  if (!project) return;
  buildOptions(project);
  if (project.instructions.trim()) {
    el.instructionsBody.replaceChildren(renderMarkdown(project.instructions));
    el.instructions.hidden = false;
    // open until this browser has labelled under these instructions (they open again when
    // they change), so on a phone the item is not pushed below the fold for good
    el.instructions.open = localStorage.getItem(readKey()) !== instructionsDigest();
  }
  if (token) {
    // a labeller token names its worker: ask the server who that is
    try {
      const who = await client.listLeases({ project: projectName, workerId: "" });
      if (who.workerId) {
        worker = who.workerId;
        localStorage.setItem(KEYS.name, worker);
      }
    } catch {
      // a token that may name workers (or no auth): the labeller types a name
    }
  }
  if (!worker) return askName();
  await start();
}

if (ownerView) startOwner();
else void main();
