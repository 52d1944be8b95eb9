// Starry Guide web app: where am I -> tonight at a glance -> the night strip -> live
// updates -> nudges -> feedback. Plain ES modules served by the API itself; no build step.
import { drawStrip, describeStep } from "./strip.js";

const $ = (id) => document.getElementById(id);
const saved = {
  get(key, fallback = null) {
    try { return JSON.parse(localStorage.getItem(`starry.${key}`)) ?? fallback; } catch { return fallback; }
  },
  set(key, value) { localStorage.setItem(`starry.${key}`, JSON.stringify(value)); },
};
const GO_P_CLEAR = 0.5;
const state = { place: saved.get("place"), night: null, stations: [], events: null, timers: [],
  updatedAt: null, observedUpTo: null };

// ---------- formatting in the place's time zone ----------
function formatter(timeZone) {
  const hm = new Intl.DateTimeFormat(undefined, { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const h = new Intl.DateTimeFormat(undefined, { timeZone, hour: "2-digit", hourCycle: "h23" });
  const parts = (iso) => Object.fromEntries(hm.formatToParts(new Date(iso))
    .filter((p) => p.type === "hour" || p.type === "minute").map((p) => [p.type, Number(p.value)]));
  return { time: (iso) => hm.format(new Date(iso)), hour: (iso) => h.format(new Date(iso)), parts, timeZone };
}
const pct = (f) => `${Math.round(f * 100)}\u00a0%`;
function moonText(win) {
  if (win.moon === "down") return "moon down";
  return `moon ${win.moon} (${pct(win.moon_illumination)} lit)`;
}
function windowText(win, fmt) {
  return `${fmt.time(win.start)}–${fmt.time(win.end)}, ${pct(win.mean_p_clear)} clear, ${moonText(win)}`;
}

// ---------- where am I ----------
function placeLabel(place) {
  if (!place) return "Choose a place";
  return place.label || `${place.lat.toFixed(2)}°, ${place.lon.toFixed(2)}°`;
}
function setPlace(place) {
  state.place = place;
  saved.set("place", place);
  $("place-label").textContent = placeLabel(place);
  $("where").close();
  connectEvents();
  loadNight();
  if (saved.get("push") && nudgeSettings().on) setNudge(); // the nudges follow the place
}
async function loadStations() {
  try {
    const response = await fetch("/v1/stations");
    if (!response.ok) return;
    const list = await response.json();
    state.stations = Array.isArray(list) ? list : (list.stations || []);
  } catch { return; }
  const select = $("station-select");
  for (const s of state.stations) {
    const option = document.createElement("option");
    option.value = s.station_id;
    option.textContent = `${s.name || s.station_id} (${s.latitude.toFixed(2)}°, ${s.longitude.toFixed(2)}°)`;
    select.appendChild(option);
  }
  $("station-picker").hidden = state.stations.length === 0;
}
function openWhere() {
  const p = state.place;
  if (p && !p.station_id) { $("lat-input").value = p.lat; $("lon-input").value = p.lon; }
  $("coords-error").textContent = "";
  $("where").showModal();
}
function useLocation() {
  const status = $("geo-status");
  if (!("geolocation" in navigator)) { status.textContent = "This browser cannot share its location; choose a station or type coordinates."; return; }
  status.textContent = "Asking for your location…";
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      status.textContent = "";
      const lat = Math.round(pos.coords.latitude * 100) / 100, lon = Math.round(pos.coords.longitude * 100) / 100;
      setPlace({ lat, lon, label: `My location (${lat.toFixed(2)}°, ${lon.toFixed(2)}°)` });
    },
    (err) => {
      status.textContent = err.code === err.PERMISSION_DENIED
        ? "Location permission was refused; choose a station or type coordinates instead."
        : `Could not get your location (${err.message}); type coordinates instead.`;
    },
    { timeout: 15000, maximumAge: 10 * 60 * 1000 });
}
function submitCoords(event) {
  event.preventDefault();
  const lat = Number($("lat-input").value), lon = Number($("lon-input").value);
  const bad = [];
  if ($("lat-input").value === "" || !(lat >= -90 && lat <= 90)) bad.push("latitude must be between -90 and 90");
  if ($("lon-input").value === "" || !(lon >= -180 && lon <= 180)) bad.push("longitude must be between -180 and 180");
  if (bad.length) { $("coords-error").textContent = bad.join("; ") + "."; return; }
  setPlace({ lat, lon, label: `${lat.toFixed(2)}°, ${lon.toFixed(2)}°` });
}
function chooseStation() {
  const s = state.stations.find((x) => x.station_id === $("station-select").value);
  if (s) setPlace({ station_id: s.station_id, lat: s.latitude, lon: s.longitude, label: s.name || s.station_id });
}

// ---------- tonight ----------
// a link may name the place and night: /?lat=52.52&lon=13.4, /?station=ID, &date=2026-11-27
const query = new URLSearchParams(location.search);
const nightDate = /^\d{4}-\d{2}-\d{2}$/.test(query.get("date") || "") ? query.get("date") : "tonight";
function placeFromLink() {
  const lat = Number(query.get("lat")), lon = Number(query.get("lon"));
  if (query.get("station")) return { station_id: query.get("station"), label: query.get("station") };
  if (query.has("lat") && query.has("lon") && lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180) {
    return { lat, lon, label: `${lat.toFixed(2)}°, ${lon.toFixed(2)}°` };
  }
  return null;
}
function nightUrl(place) {
  if (place.station_id) return `/v1/stations/${encodeURIComponent(place.station_id)}/night?date=${nightDate}`;
  return `/v1/night?lat=${place.lat}&lon=${place.lon}&date=${nightDate}`;
}
async function loadNight() {
  const place = state.place;
  if (!place) { $("verdict").textContent = "Where are you?"; $("best").textContent = "Choose a place to see tonight's sky."; return; }
  $("verdict").classList.remove("go", "nogo");
  try {
    // revalidate every time: the server answers 304 (ETag) while nothing changed, and a
    // plan redrawn after a live nowcast event must not come from the browser's cache
    const response = await fetch(nightUrl(place), { cache: "no-cache" });
    const body = await response.json();
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    if (state.place !== place) return; // the place changed meanwhile
    state.night = body;
    state.updatedAt = new Date();
    saved.set("lastNight", { place, night: body, at: state.updatedAt.toISOString() });
  } catch (error) {
    const last = saved.get("lastNight");
    if (last && last.place && JSON.stringify(last.place) === JSON.stringify(place)) {
      state.night = last.night; state.updatedAt = new Date(last.at);
      $("notes").hidden = false;
      $("notes").textContent = `Offline or the server did not answer (${error.message}); showing the plan from ${state.updatedAt.toLocaleTimeString()}.`;
    } else {
      $("verdict").textContent = "No plan";
      $("best").textContent = `The server did not answer: ${error.message}`;
      return;
    }
  }
  render();
}

function render() {
  const night = state.night;
  const fmt = formatter(night.place.time_zone);
  state.fmt = fmt;
  // the go/no-go is for the hours still ahead: a window that is over no longer counts
  const now = Date.now();
  const ahead = night.best_windows.filter((w) => Date.parse(w.end) > now);
  const best = ahead[0];
  const go = Boolean(best) && best.minutes >= 30 && best.mean_p_clear >= GO_P_CLEAR;
  const verdict = $("verdict");
  verdict.classList.toggle("go", go);
  verdict.classList.toggle("nogo", !go);
  if (best) {
    verdict.textContent = go ? "Go — look up tonight" : "No-go tonight";
    $("best").textContent = `${Date.parse(best.start) <= now ? "Clear window now" : "Best window"} ${windowText(best, fmt)}`;
  } else if (night.best_windows.length) {
    verdict.textContent = "Tonight's window is over";
    $("best").textContent = `It was ${windowText(night.best_windows[0], fmt)}`;
  } else {
    verdict.textContent = "No-go tonight";
    $("best").textContent = night.darkness.reason ? "No dark sky tonight." : "No good window tonight.";
  }
  const deviceZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("tz-note").textContent = `Times in ${night.place.time_zone}` +
    (deviceZone && deviceZone !== night.place.time_zone ? ` (your device: ${deviceZone})` : "") +
    ` · night of ${night.date}`;
  const notes = [];
  if (night.darkness.reason) notes.push(night.darkness.reason);
  if (night.climatology.kind !== "station" && !night.p_clear_source.startsWith("nowcast")) {
    notes.push(`Rough forecast: ${night.climatology.description}`);
  }
  $("notes").hidden = notes.length === 0;
  $("notes").textContent = notes.join(" ");
  renderUpdated();
  drawStrip($("strip"), night, fmt, $("readout"));
  renderTable(night, fmt);
  renderEvents(night, fmt);
  renderFeedback();
  scheduleNudges();
}
function renderUpdated() {
  if (!state.updatedAt) return;
  const night = state.night;
  const observed = state.observedUpTo ? ` · latest observation ${formatter(night.place.time_zone).time(state.observedUpTo)}` : "";
  $("updated").textContent = `Forecast updated ${state.updatedAt.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" })}${observed} · ${night.p_clear_source}`;
}
function renderTable(night, fmt) {
  const body = document.querySelector("#night-table tbody");
  body.textContent = "";
  for (const s of night.timeline) {
    const row = body.insertRow();
    const moon = s.moon_altitude_deg > 0 ? `${Math.round(s.moon_altitude_deg)}° (${pct(s.moon_illumination)})` : "down";
    for (const value of [fmt.time(s.time), pct(s.p_clear), s.twilight, moon, s.sky_brightness_mag_arcsec2.toFixed(1), s.score.toFixed(2)]) {
      row.insertCell().textContent = value;
    }
  }
}
function renderEvents(night, fmt) {
  const list = $("events");
  list.textContent = "";
  const s = night.summary;
  const rows = [["Sunset", s.sunset], ["Astronomical dusk", s.astronomical_dusk], ["Astronomical dawn", s.astronomical_dawn],
    ["Sunrise", s.sunrise], ["Moonrise", s.moonrise], ["Moonset", s.moonset]];
  for (const [name, at] of rows) {
    const box = document.createElement("div");
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = at ? fmt.time(at.utc) : "—";
    if (at) dd.title = `${at.local} (UTC ${at.utc})`;
    box.append(dt, dd); list.appendChild(box);
  }
}

// ---------- feedback: after a window, "was it clear?" (queued and retried if offline) ----------
function pendingFeedbackWindow() {
  const night = state.night;
  if (!night || !night.prediction_id) return null;
  if (saved.get("answered", {})[night.prediction_id]) return null;
  const now = Date.now();
  return night.best_windows.filter((w) => Date.parse(w.end) <= now)
    .sort((a, b) => Date.parse(b.end) - Date.parse(a.end))[0] || null;
}
function renderFeedback() {
  const win = pendingFeedbackWindow();
  const section = $("feedback");
  if (!win) { if (!$("feedback-status").textContent) section.hidden = true; return; }
  section.hidden = false;
  $("feedback-question").textContent = `Tonight's window ${state.fmt.time(win.start)}–${state.fmt.time(win.end)} is over. What did the sky look like?`;
  for (const b of section.querySelectorAll("button")) b.disabled = false;
}
async function giveFeedback(observed) {
  const night = state.night;
  const item = { prediction_id: night.prediction_id, observed, observed_at: new Date().toISOString() };
  const answered = saved.get("answered", {});
  answered[item.prediction_id] = observed;
  saved.set("answered", answered);
  for (const b of $("feedback").querySelectorAll("button")) b.disabled = true;
  saved.set("feedbackQueue", [...saved.get("feedbackQueue", []), item]);
  $("feedback-status").textContent = "Thank you! Sending…";
  const left = await flushFeedback();
  $("feedback-status").textContent = left.some((q) => q.prediction_id === item.prediction_id)
    ? "Thank you! You seem to be offline: your answer is saved and will be sent when you are back."
    : "Thank you! Your answer helps check the forecast.";
}
let flushing = null; // one flush at a time: two would send the same answer twice
function flushFeedback() {
  flushing = (flushing || Promise.resolve()).then(sendQueued, sendQueued);
  return flushing;
}
async function sendQueued() {
  const queue = saved.get("feedbackQueue", []);
  const left = [];
  for (const item of queue) {
    try {
      const response = await fetch("/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(item) });
      // 2xx: stored; 409: already answered; other 4xx: the server will never take it
      if (response.status >= 500) left.push(item);
    } catch { left.push(item); } // offline: keep it
  }
  saved.set("feedbackQueue", left);
  return left;
}

// ---------- nudges: Notification API through the service worker ----------
function nudgeSettings() { return saved.get("nudge", { on: false, minutes: 60 }); }
// as the server's window_opened rule: the nowcast must back the window (climatology alone is
// a seasonal prior, not a forecast that it will be clear), so coordinates alone never nudge
function qualifies(win, minutes) {
  return win.minutes >= minutes && win.mean_p_clear >= GO_P_CLEAR && (win.nowcast_minutes || 0) > 0 &&
    Date.parse(win.end) > Date.now();
}
async function notify(title, body, tag) {
  if (!("Notification" in window) || Notification.permission !== "granted") return false;
  if (saved.get("push")) return false; // the server pushes this nudge itself
  const key = `nudged.${tag}`;
  if (saved.get(key)) return false;
  saved.set(key, true);
  const registration = "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration("/") : null;
  if (registration) await registration.showNotification(title, { body, tag, icon: "/app/icon.svg", data: { url: "/" } });
  else new Notification(title, { body, tag });
  $("nudge-status").textContent = `Nudged: ${title} — ${body}`;
  return true;
}
function scheduleNudges() {
  for (const t of state.timers) clearTimeout(t);
  state.timers = [];
  const { on, minutes } = nudgeSettings();
  const night = state.night;
  if (!on || !night) return;
  for (const win of night.best_windows.filter((w) => qualifies(w, minutes))) {
    const wait = Date.parse(win.start) - Date.now();
    const fire = () => notify("Clear sky now", `Look up until ${state.fmt.time(win.end)} (${pct(win.mean_p_clear)} clear, ${moonText(win)}).`, `start-${placeKey()}-${win.start}`);
    if (wait <= 0) fire();
    else if (wait < 2 ** 31 - 1) state.timers.push(setTimeout(fire, wait));
  }
}
function placeKey() { const p = state.place; return p.station_id || `${p.lat},${p.lon}`; }
// Web Push: the server decides and sends the nudge, so it arrives with the page closed and
// the phone in a pocket; the page's own nudges (above) remain the fallback where a browser
// has no push. The subscription's id and secret (to unsubscribe) stay in this browser.
function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}
// iOS and iPadOS give Web Push only to web apps added to the Home Screen
function needsInstall() {
  const ios = /iPad|iPhone|iPod/.test(navigator.userAgent) || (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
  const installed = window.matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;
  return ios && !installed;
}
function keyBytes(base64url) {
  const padded = base64url + "=".repeat((4 - (base64url.length % 4)) % 4);
  const raw = atob(padded.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}
async function pushSubscribe(minutes) {
  const registration = await registerWorker();
  if (!registration) throw new Error("the service worker could not be registered");
  await navigator.serviceWorker.ready;
  const keyResponse = await fetch("/v1/push/key");
  if (!keyResponse.ok) throw new Error(`the server has no push key (HTTP ${keyResponse.status})`);
  const { key } = await keyResponse.json();
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && subscription.options && subscription.options.applicationServerKey) {
    const current = new Uint8Array(subscription.options.applicationServerKey);
    const wanted = keyBytes(key);
    if (current.length !== wanted.length || current.some((b, i) => b !== wanted[i])) { await subscription.unsubscribe(); subscription = null; }
  }
  subscription = subscription || await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
  const place = state.place;
  const where = place.station_id ? { station: place.station_id } : { latitude: place.lat, longitude: place.lon };
  const response = await fetch("/v1/push/subscriptions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subscription: subscription.toJSON(), ...where, min_probability: GO_P_CLEAR,
      min_hours: minutes / 60, timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" }),
  });
  const body = await response.json();
  if (!response.ok) {
    await subscription.unsubscribe();
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail);
  }
  saved.set("push", { id: body.id, secret: body.secret, station: body.station, place: placeKey() });
  return body;
}
async function pushUnsubscribe() {
  const push = saved.get("push");
  if (push) {
    try {
      await fetch(`/v1/push/subscriptions/${encodeURIComponent(push.id)}`, { method: "DELETE", headers: { Authorization: `Bearer ${push.secret}` } });
    } catch { /* offline: the server expires it when it is no longer seen */ }
    saved.set("push", null);
  }
  const registration = "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration("/") : null;
  const subscription = registration && registration.pushManager ? await registration.pushManager.getSubscription() : null;
  if (subscription) await subscription.unsubscribe();
}
async function setNudge() {
  const settings = { on: $("nudge-on").checked, minutes: Math.max(15, Number($("nudge-minutes").value) || 60) };
  saved.set("nudge", settings);
  const status = $("nudge-status");
  $("install-hint").hidden = !needsInstall();
  if (!settings.on) {
    await pushUnsubscribe();
    status.textContent = "Off.";
    scheduleNudges();
    return;
  }
  if (!("Notification" in window)) { status.textContent = "This browser cannot show notifications."; return; }
  const permission = await Notification.requestPermission();
  if (permission !== "granted") {
    status.textContent = "Notifications are blocked for this site; allow them in the browser's site settings.";
    return;
  }
  await registerWorker();
  const rule = `a window of at least ${settings.minutes} minutes with ${pct(GO_P_CLEAR)} clear or better tonight (a station's live observations are needed: climatology alone never nudges)`;
  if (pushSupported() && state.place && !needsInstall()) {
    try {
      const made = await pushSubscribe(settings.minutes);
      status.textContent = `On: the server will nudge this device when the nowcast for station ${made.station} gives ${rule}, even when this page is closed.`;
    } catch (error) {
      saved.set("push", null);
      status.textContent = `Push is not available here (${error.message}); you will be nudged while this page is open when the nowcast gives ${rule}.`;
    }
  } else {
    status.textContent = `${pushSupported() ? "" : "This browser has no Web Push: "}you will be nudged while this page is open when the nowcast gives ${rule}.`;
  }
  scheduleNudges();
}
async function registerWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try { return await navigator.serviceWorker.register("/sw.js", { scope: "/" }); } catch { return null; }
}

// ---------- live updates: Server-Sent Events from the station's stream ----------
function connectEvents() {
  if (state.events) { state.events.close(); state.events = null; }
  $("live").hidden = true;
  const place = state.place;
  if (!place || !place.station_id || !("EventSource" in window)) return;
  const source = new EventSource(`/v1/stations/${encodeURIComponent(place.station_id)}/events`);
  state.events = source;
  source.onopen = () => { $("live").hidden = false; };
  source.onerror = () => { $("live").hidden = true; }; // EventSource reconnects by itself
  source.addEventListener("nowcast", (event) => {
    const data = JSON.parse(event.data);
    state.observedUpTo = data.issued_for || null;
    loadNight();
  });
  source.addEventListener("window_opened", (event) => {
    const data = JSON.parse(event.data);
    const win = data.window;
    const { on, minutes } = nudgeSettings();
    if (on && state.fmt && qualifies(win, minutes)) {
      notify("A clear window opened tonight", windowText(win, state.fmt), `opened-${placeKey()}-${win.start}`);
    }
  });
  source.addEventListener("window_closed", (event) => {
    const win = JSON.parse(event.data).window;
    if (state.fmt) $("nudge-status").textContent = `The window ${state.fmt.time(win.start)}–${state.fmt.time(win.end)} is no longer expected to be clear.`;
  });
}

// ---------- theme ----------
function applyRed(on) {
  document.documentElement.classList.toggle("red", on);
  $("red-toggle").setAttribute("aria-pressed", String(on));
  document.querySelector('meta[name="theme-color"]').content = on ? "#000000" : "#070b16";
}

// ---------- start ----------
function start() {
  applyRed(saved.get("red", false));
  $("red-toggle").addEventListener("click", () => { const on = !document.documentElement.classList.contains("red"); saved.set("red", on); applyRed(on); });
  $("place-button").addEventListener("click", openWhere);
  $("use-location").addEventListener("click", useLocation);
  $("where-form").addEventListener("submit", submitCoords);
  $("where-cancel").addEventListener("click", () => $("where").close());
  $("station-select").addEventListener("change", chooseStation);
  for (const b of $("feedback").querySelectorAll("button")) b.addEventListener("click", () => giveFeedback(b.dataset.observed));
  const nudge = nudgeSettings();
  $("nudge-on").checked = nudge.on; $("nudge-minutes").value = nudge.minutes;
  $("nudge-on").addEventListener("change", setNudge);
  $("nudge-minutes").addEventListener("change", setNudge);
  $("install-hint").hidden = !(nudge.on && needsInstall());
  const linked = placeFromLink();
  if (linked) { state.place = linked; saved.set("place", linked); }
  $("place-label").textContent = placeLabel(state.place);
  if (nudge.on && saved.get("push") && pushSupported() && state.place) {
    pushSubscribe(nudge.minutes).catch(() => saved.set("push", null)); // seen again: not expired
  }
  let resize;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(() => state.night && render(), 150); });
  window.addEventListener("online", flushFeedback);
  setInterval(() => { flushFeedback(); if (state.night) renderFeedback(); }, 60 * 1000);
  registerWorker();
  flushFeedback();
  loadStations();
  if (state.place) { connectEvents(); loadNight(); } else { loadNight(); openWhere(); }
}
start();
export { describeStep };
