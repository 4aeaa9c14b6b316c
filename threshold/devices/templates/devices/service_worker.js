// Threshold Verify's service worker (scope /verify/): it keeps the app's shell, so that the
// installed app opens without the network. The network comes first: a cached copy is used
// only when the network is away. The device API (POST) never goes through the cache.
"use strict";

const SHELL = {{ shell|safe }};
const CACHE = "threshold-verify-" + {{ version|safe }};

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(
          keys
            .filter((key) => key.startsWith("threshold-verify-") && key !== CACHE)
            .map((key) => caches.delete(key)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) {
    return;
  }
  if (!SHELL.includes(url.pathname)) {
    return;
  }
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(url.pathname, copy));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname)),
  );
});

// Web Push (when the operator turned it on): the message only says what the push asks, a
// sign-in or "Verify it's you" (no number, no secret); the notification opens the app, which
// asks the server for the rest. A message without its own words gets its purpose's (the
// server's, webpush.PAYLOADS), or, with no purpose known, words that fit any request. One tag
// for every request: only one waits at a time, so a new one replaces the last.
const ASKS = {{ asks|safe }};
const ANY_REQUEST = {{ any_request|safe }};

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch (error) {
    message = {};
  }
  if (!message || typeof message !== "object") message = {};
  const purpose = typeof message.purpose === "string" ? message.purpose : "";
  const asked = Object.prototype.hasOwnProperty.call(ASKS, purpose) ? ASKS[purpose] : ANY_REQUEST;
  const text = (value, otherwise) => (typeof value === "string" && value ? value : otherwise);
  event.waitUntil(
    self.registration.showNotification(text(message.title, asked.title), {
      body: text(message.body, asked.body),
      tag: "threshold-verify-request",
      renotify: true,
      requireInteraction: true,
      icon: SHELL[SHELL.length - 1],
      data: { url: self.registration.scope },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = (event.notification.data && event.notification.data.url) || self.registration.scope;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      const open = windows.find((client) => client.url.startsWith(self.registration.scope));
      return open ? open.focus() : self.clients.openWindow(target);
    }),
  );
});
