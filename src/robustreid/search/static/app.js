// The search page: upload or drop a crop, show the ranked hits and a timeline per camera; click a hit (or a
// timeline bar) to search with that tracklet. Plain DOM, no library, no CDN: it works offline.
"use strict";

const state = { cameras: [], token: sessionStorage.getItem("robustreid-token") || "" };
const $ = (id) => document.getElementById(id);

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function api(url, options, retried) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, opts.headers || {});
  if (state.token) opts.headers["Authorization"] = "Bearer " + state.token;
  const response = await fetch(url, opts);
  if (response.status === 401 && !retried) {
    const token = window.prompt("This server needs a token (robustreid serve --token):");
    if (token) {
      state.token = token.trim();
      sessionStorage.setItem("robustreid-token", state.token);
      return api(url, options, true);
    }
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(response.status + ": " + detail);
  }
  return response;
}

async function thumbnail(img, url) {
  // fetched with the token (an <img src> cannot send it), shown from a blob URL
  try {
    const blob = await (await api(url)).blob();
    img.src = URL.createObjectURL(blob);
  } catch (e) { img.alt = "no thumbnail"; }
}

function fmtTime(t, frame) {
  return t === null || t === undefined ? "frame " + frame : t.toFixed(1) + " s";
}

function showHits(result) {
  const list = $("hits");
  list.textContent = "";
  result.hits.forEach((hit, i) => {
    const li = document.createElement("li");
    li.className = "hit";
    li.tabIndex = 0;
    li.dataset.tracklet = hit.tracklet_id;
    li.title = "tracklet " + hit.tracklet_id + (hit.label ? " (" + hit.label + ")" : "") + ": search with it";
    const img = document.createElement("img");
    img.alt = "tracklet " + hit.tracklet_id;
    thumbnail(img, hit.thumbnail_url);
    const rank = document.createElement("span"); rank.className = "rank"; rank.textContent = i + 1;
    const cam = document.createElement("span"); cam.className = "cam"; cam.textContent = hit.camera;
    const time = document.createElement("span"); time.className = "time";
    time.textContent = fmtTime(hit.first_time, hit.first_frame) + " - " +
      fmtTime(hit.last_time, hit.last_frame);
    const dist = document.createElement("span"); dist.className = "dist";
    dist.textContent = "distance " + hit.distance.toFixed(3);
    li.append(img, rank, cam, time, dist);
    li.addEventListener("click", () => searchTracklet(hit.tracklet_id));
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") searchTracklet(hit.tracklet_id); });
    list.append(li);
  });
  drawTimeline(result.hits);
}

function span(c) {
  const useTime = c.first_time !== null && c.first_time !== undefined;
  return useTime ? [c.first_time, c.last_time] : [c.first_frame, c.last_frame];
}

function drawTimeline(hits) {
  const box = $("timeline");
  box.textContent = "";
  if (!state.cameras.length) return;
  const starts = state.cameras.map((c) => span(c)[0]).filter((v) => v !== null);
  const ends = state.cameras.map((c) => span(c)[1]).filter((v) => v !== null);
  const lo = Math.min(...starts), hi = Math.max(...ends), width = Math.max(hi - lo, 1e-9);
  const useTime = state.cameras.every((c) => c.first_time !== null && c.first_time !== undefined);
  for (const camera of state.cameras) {
    const lane = document.createElement("div"); lane.className = "lane"; lane.dataset.camera = camera.name;
    const name = document.createElement("span"); name.className = "name"; name.textContent = camera.name;
    const track = document.createElement("div"); track.className = "track";
    // nearest drawn last (on top); the farther a hit, the paler its bar
    hits.filter((h) => h.camera === camera.name).reverse().forEach((h) => {
      const [a, b] = span(h);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.dataset.tracklet = h.tracklet_id;
      bar.style.left = (100 * (a - lo) / width) + "%";
      bar.style.width = (100 * (b - a) / width) + "%";
      bar.style.opacity = Math.max(0.12, 1 - 1.5 * h.distance);
      bar.title = camera.name + ": " + fmtTime(h.first_time, h.first_frame) + " - " +
        fmtTime(h.last_time, h.last_frame) + ", distance " + h.distance.toFixed(3);
      bar.addEventListener("click", () => searchTracklet(h.tracklet_id));
      track.append(bar);
    });
    lane.append(name, track);
    box.append(lane);
  }
  const axis = document.createElement("div"); axis.className = "axis";
  const unit = useTime ? " s" : "";
  const left = document.createElement("span"); left.textContent = lo.toFixed(useTime ? 1 : 0) + unit;
  const right = document.createElement("span"); right.textContent = hi.toFixed(useTime ? 1 : 0) + unit;
  axis.append(left, right);
  box.append(axis);
}

function k() { return $("k").value || "20"; }

async function searchImage(file) {
  if (!file) return;
  $("query-img").src = URL.createObjectURL(file);
  $("query-img").hidden = false;
  $("query-label").textContent = file.name;
  status("searching ...");
  const form = new FormData();
  form.append("image", file);
  form.append("k", k());
  try {
    const result = await (await api("/api/search", { method: "POST", body: form })).json();
    showHits(result);
    status(result.hits.length + " hits in " + result.seconds.toFixed(3) + " s");
  } catch (e) { status(e.message, true); }
}

async function searchTracklet(id) {
  status("searching with tracklet " + id + " ...");
  $("query-label").textContent = "tracklet " + id;
  thumbnail($("query-img"), "/thumbnails/" + id);
  $("query-img").hidden = false;
  try {
    const result = await (await api("/api/search/tracklet/" + id + "?k=" + encodeURIComponent(k()),
      { method: "POST" })).json();
    showHits(result);
    status(result.hits.length + " hits for tracklet " + id + " in " + result.seconds.toFixed(3) + " s");
  } catch (e) { status(e.message, true); }
}

async function start() {
  const drop = $("drop");
  $("file").addEventListener("change", (ev) => searchImage(ev.target.files[0]));
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    searchImage(ev.dataTransfer.files[0]);
  });
  try {
    const info = await (await api("/api/info")).json();
    state.cameras = await (await api("/api/cameras")).json();
    $("info").textContent = info.tracklets + " tracklets in " + info.cameras + " cameras, model " +
      info.checkpoint + " (" + info.store + " store)";
    drawTimeline([]);
    status("ready");
  } catch (e) { status(e.message, true); }
}

start();
