// The night strip: plain SVG, sunset to sunrise in 15-minute steps.
// Lanes: P(clear) bars with the best windows highlighted; darkness (twilight phase);
// moon altitude (with illumination) and zenith sky darkness. Pointer, touch and keyboard
// (arrow keys, Home, End) move a cursor whose values are read out in an aria-live region.

const NS = "http://www.w3.org/2000/svg";
const PHASE = { "day": "day", "civil twilight": "civil", "nautical twilight": "nautical",
  "astronomical twilight": "astronomical", "night": "night" };

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

export function describeStep(step, fmt) {
  const moon = step.moon_altitude_deg > 0
    ? `moon up ${Math.round(step.moon_altitude_deg)}° (${Math.round(step.moon_illumination * 100)}\u00a0% lit)`
    : "moon down";
  return `${fmt.time(step.time)} · ${Math.round(step.p_clear * 100)}\u00a0% clear · ${step.twilight} · ` +
    `${moon} · sky ${step.sky_brightness_mag_arcsec2.toFixed(1)} mag/arcsec² · score ${step.score.toFixed(2)}`;
}

export function drawStrip(container, night, fmt, readout) {
  container.textContent = "";
  const steps = night.timeline;
  if (!steps.length) {
    readout.textContent = night.darkness.reason || "No night to show.";
    return;
  }
  const width = Math.max(320, Math.round(container.clientWidth || 640));
  const left = 8, right = 8, top = 18;
  const laneClear = 96, laneDark = 14, laneMoon = 52, gap = 8, axis = 20;
  const height = top + laneClear + gap + laneDark + gap + laneMoon + axis;
  const n = steps.length, w = (width - left - right) / n;
  const x = (i) => left + i * w;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, tabindex: "0",
    role: "slider", "aria-label": "Night strip: use the arrow keys to step through the night",
    "aria-valuemin": "0", "aria-valuemax": String(n - 1), "aria-valuenow": "0" });

  // lane 1: P(clear) and the best windows
  const yClear = top, yDark = top + laneClear + gap, yMoon = yDark + laneDark + gap;
  for (const f of [0.5, 1]) {
    el("line", { class: "grid", x1: left, x2: width - right, y1: yClear + laneClear * (1 - f),
      y2: yClear + laneClear * (1 - f) }, svg);
  }
  el("text", { class: "lane-label", x: left + 2, y: yClear - 5 }, svg).textContent = "P(clear)";
  const starts = steps.map((s) => Date.parse(s.time));
  const stepMs = 15 * 60 * 1000;
  for (const win of night.best_windows) {
    const a = Date.parse(win.start), b = Date.parse(win.end);
    const i0 = (a - starts[0]) / stepMs, i1 = (b - starts[0]) / stepMs;
    if (i1 <= 0 || i0 >= n) continue;
    const xa = x(Math.max(0, i0)), xb = x(Math.min(n, i1));
    el("rect", { class: "win", x: xa, y: yClear, width: Math.max(2, xb - xa), height: laneClear,
      rx: 4 }, svg);
  }
  steps.forEach((s, i) => {
    const h = laneClear * s.p_clear;
    el("rect", { class: "bar-clear", x: x(i) + 0.5, y: yClear + laneClear - h,
      width: Math.max(1, w - 1), height: h, opacity: 0.35 + 0.65 * s.score }, svg);
  });
  if (night.best_windows.length) {
    const win = night.best_windows[0];
    const i0 = Math.max(0, (Date.parse(win.start) - starts[0]) / stepMs);
    el("text", { class: "win-label", x: Math.min(x(i0) + 3, width - 80), y: yClear + 12 }, svg)
      .textContent = "best";
  }

  // lane 2: darkness
  steps.forEach((s, i) => {
    el("rect", { class: `ph-${PHASE[s.twilight] || "night"}`, x: x(i), y: yDark,
      width: w + 0.5, height: laneDark }, svg);
  });

  // lane 3: moon altitude (0-90 degrees) and sky darkness (16-22 mag/arcsec^2)
  const yAlt = (alt) => yMoon + laneMoon * (1 - Math.max(0, Math.min(90, alt)) / 90);
  const ySky = (mag) => yMoon + laneMoon * (1 - (Math.max(16, Math.min(22, mag)) - 16) / 6);
  const mid = (i) => x(i) + w / 2;
  const moonPts = steps.map((s, i) => `${mid(i)},${yAlt(s.moon_altitude_deg)}`);
  el("polygon", { class: "moon-fill", points: `${mid(0)},${yMoon + laneMoon} ${moonPts.join(" ")} ${mid(n - 1)},${yMoon + laneMoon}` }, svg);
  el("polyline", { class: "moon", points: moonPts.join(" ") }, svg);
  el("polyline", { class: "sky", points: steps.map((s, i) => `${mid(i)},${ySky(s.sky_brightness_mag_arcsec2)}`).join(" ") }, svg);
  el("line", { class: "grid", x1: left, x2: width - right, y1: yMoon + laneMoon, y2: yMoon + laneMoon }, svg);
  const lit = Math.round(Math.max(...steps.map((s) => s.moon_illumination)) * 100);
  el("text", { class: "lane-label", x: left + 2, y: yMoon + 10 }, svg).textContent =
    `moon (${lit}\u00a0% lit) · sky darkness`;

  // time axis: every whole local hour (steps start at local solar time, rarely on the hour)
  const axisY = height - 6;
  const first = fmt.parts(steps[0].time);
  let tick = starts[0] + ((60 - first.minute) % 60) * 60 * 1000;
  let lastLabel = -Infinity;
  const end = starts[0] + n * stepMs;
  for (; tick <= end; tick += 3600 * 1000) {
    const px = left + ((tick - starts[0]) / stepMs) * w;
    el("line", { class: "grid", x1: px, x2: px, y1: yMoon + laneMoon, y2: yMoon + laneMoon + 4 }, svg);
    if (px - lastLabel < 30 || px > width - 10) continue;
    lastLabel = px;
    el("text", { x: px, y: axisY, "text-anchor": "middle" }, svg).textContent = fmt.hour(new Date(tick).toISOString());
  }

  // now, when it falls in the night
  const nowAt = (Date.now() - starts[0]) / stepMs;
  if (nowAt >= 0 && nowAt <= n) {
    const px = left + nowAt * w;
    el("line", { class: "now", x1: px, x2: px, y1: top - 4, y2: yMoon + laneMoon }, svg);
    el("text", { class: "now-label", x: Math.min(px + 3, width - 30), y: yClear + laneClear - 4 }, svg).textContent = "now";
  }

  // cursor
  const cursor = el("line", { class: "cursor", x1: 0, x2: 0, y1: top - 4, y2: yMoon + laneMoon,
    visibility: "hidden" }, svg);
  let index = 0;
  const best = night.best_windows[0];
  if (best) index = Math.max(0, Math.min(n - 1, Math.round((Date.parse(best.start) - starts[0]) / stepMs)));
  function select(i, show = true) {
    index = Math.max(0, Math.min(n - 1, i));
    const cx = mid(index);
    cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx);
    cursor.setAttribute("visibility", show ? "visible" : "hidden");
    svg.setAttribute("aria-valuenow", String(index));
    const text = describeStep(steps[index], fmt);
    svg.setAttribute("aria-valuetext", text);
    readout.textContent = text;
  }
  function fromPointer(event) {
    const box = svg.getBoundingClientRect();
    const px = (event.clientX - box.left) * (width / box.width);
    select(Math.floor((px - left) / w));
  }
  svg.addEventListener("pointermove", fromPointer);
  svg.addEventListener("pointerdown", fromPointer);
  svg.addEventListener("keydown", (event) => {
    const moves = { ArrowRight: 1, ArrowLeft: -1, PageUp: -4, PageDown: 4 };
    if (event.key in moves) select(index + moves[event.key]);
    else if (event.key === "Home") select(0);
    else if (event.key === "End") select(n - 1);
    else return;
    event.preventDefault();
  });
  svg.addEventListener("focus", () => select(index));
  container.appendChild(svg);
  select(index, false);
  readout.textContent = "Tap, hover or use the arrow keys on the strip to see each step.";
}
