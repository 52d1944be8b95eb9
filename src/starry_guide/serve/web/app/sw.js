// Starry Guide service worker: keeps the app shell for offline starts and shows nudges
// (notifications) even when the page is in the background; focuses the app on a tap.
const SHELL = "starry-shell-v1";
const FILES = ["/", "/app/app.css", "/app/app.js", "/app/strip.js", "/app/icon.svg", "/app/manifest.webmanifest"];

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
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    for (const w of windows) if ("focus" in w) return w.focus();
    return self.clients.openWindow("/");
  }));
});
