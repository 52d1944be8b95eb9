// Starry Guide service worker: keeps the app shell for offline starts, shows the server's
// Web Push nudges (the page may be closed, the phone in a pocket) and the page's own, and
// opens the app on a tap.
const SHELL = "starry-shell-v2";
const FILES = ["/", "/app/app.css", "/app/app.js", "/app/strip.js", "/app/icon.svg", "/app/icon-192.png",
  "/app/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== SHELL).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});
// the shell: network first (never stale when online), the cached copy when offline; the API
// is never cached here (the page keeps its own last plan and feedback queue)
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !FILES.includes(url.pathname)) return;
  event.respondWith(fetch(event.request).then((response) => {
    const copy = response.clone();
    caches.open(SHELL).then((cache) => cache.put(event.request, copy));
    return response;
  }).catch(() => caches.match(event.request)));
});
// a push from the server (encrypted JSON: station, night, start, end, mean_p_clear, title,
// body, tag, url): always a visible notification — browsers (Safari first) revoke the
// permission of sites whose pushes show nothing
self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = { body: event.data ? event.data.text() : "" }; }
  const title = data.title || "Starry Guide";
  const options = {
    body: data.body || "A clear window is coming tonight: open the app for the plan.",
    tag: data.tag || "starry-nudge", icon: "/app/icon-192.png", badge: "/app/icon-192.png",
    data: { url: typeof data.url === "string" && data.url.startsWith("/") ? data.url : "/", push: data },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin).href;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    for (const w of windows) if ("focus" in w) return ("navigate" in w ? w.navigate(target) : Promise.resolve(w)).then((c) => (c || w).focus());
    return self.clients.openWindow(target);
  }));
});
