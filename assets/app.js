// dockpub's web page: plain JavaScript against the /api/v1 JSON API.
// Everything the server says is put on the page as text (textContent), never as
// HTML, so a build's log or error cannot inject markup.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "dockpub.token";
const LIST_POLL_MS = 2000;
const PAGE_SIZE = 20;
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const RUNNING = new Set(["queued", "building", "pushing"]);
const SOURCE_LABELS = new Set(["org.opencontainers.image.source", "org.opencontainers.image.revision"]);

const $ = (id) => document.getElementById(id);

// ---- talking to the API ----------------------------------------------------

class ApiFailure extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch (_) {
    return ""; // storage can be off (private modes); then there is no token
  }
}

// Every request carries the token when one is set (EventSource could not send it,
// which is why the event stream is read with fetch too).
function withAuth(headers) {
  const token = storedToken();
  const all = new Headers(headers || {});
  if (token) all.set("Authorization", "Bearer " + token);
  return all;
}

async function request(path, options) {
  const init = Object.assign({}, options);
  init.headers = withAuth(init.headers);
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiFailure("Cannot reach the dockpub server (" + err.message + ").", "network", 0);
  }
  if (!response.ok) throw await failureOf(response);
  return response;
}

async function requestJson(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

// The API's errors are {"error":{"code","message"}}; anything else (a proxy, an
// auth layer) still gets a sentence.
async function failureOf(response) {
  let code = "http_" + response.status;
  let message = "";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || "";
    } else if (body && body.message) {
      message = body.message;
    }
  } catch (_) {
    // not JSON: fall through to the status line
  }
  if (!message) message = "the server answered " + response.status + " " + response.statusText;
  if (response.status === 401) message += " (set the API token at the top of the page)";
  if (code === "unknown_field") message += " (this server does not accept that field yet)";
  return new ApiFailure(message, code, response.status);
}

function showError(element, prefix, err) {
  element.textContent = prefix + ": " + err.message;
  element.hidden = false;
}

function clearError(element) {
  element.hidden = true;
  element.textContent = "";
}

// ---- formatting -------------------------------------------------------------

function formatBytes(bytes) {
  if (bytes == null) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
}

function formatTime(text) {
  if (!text) return "";
  const date = new Date(text);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function formatDuration(fromText, toText) {
  if (!fromText || !toText) return "";
  const seconds = (new Date(toText) - new Date(fromText)) / 1000;
  if (seconds < 60) return seconds.toFixed(1) + " s";
  return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
}

function imageName(build) {
  return build.repository + ":" + build.tags.join(", ");
}

function setBadge(element, status) {
  element.textContent = status;
  element.className = "badge status-" + status;
}

// ---- token -------------------------------------------------------------------

function setUpToken() {
  $("token").value = storedToken();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    try {
      if (token) localStorage.setItem(TOKEN_KEY, token);
      else localStorage.removeItem(TOKEN_KEY);
      $("token-note").textContent = token ? "saved" : "cleared";
    } catch (err) {
      $("token-note").textContent = "cannot save: " + err.message;
    }
    refreshList();
    // An open build whose stream was refused for want of a token tries again.
    if (view.build && !view.stream) {
      view.build = null;
      openFromHash();
    }
  });
}

// ---- the builds list ---------------------------------------------------------

const list = {
  // `before` cursors of the pages above the current one; the first page has none.
  cursors: [],
  before: null,
  next: null,
  rows: new Map(),
  timer: null,
  loading: false,
};

function listPath() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (list.before != null) query.set("before", String(list.before));
  const status = $("status-filter").value;
  if (status) query.set("status", status);
  return API + "/builds?" + query;
}

async function refreshList() {
  if (list.loading) return;
  list.loading = true;
  clearTimeout(list.timer);
  try {
    const page = await requestJson(listPath());
    renderList(page);
    clearError($("list-error"));
  } catch (err) {
    showError($("list-error"), "Cannot load the builds", err);
  } finally {
    list.loading = false;
    list.timer = setTimeout(pollList, LIST_POLL_MS);
  }
}

function pollList() {
  // A hidden tab need not keep asking; it catches up when shown again.
  if (document.hidden) list.timer = setTimeout(pollList, LIST_POLL_MS);
  else refreshList();
}

function renderList(page) {
  const ol = $("build-list");
  const seen = new Set();
  page.builds.forEach((build, index) => {
    seen.add(build.id);
    let row = list.rows.get(build.id);
    if (!row) {
      row = makeRow(build.id);
      list.rows.set(build.id, row);
    }
    fillRow(row, build);
    // Rows move only when the order changed, so a focused row keeps its focus.
    if (ol.children[index] !== row) ol.insertBefore(row, ol.children[index] || null);
  });
  for (const [id, row] of list.rows) {
    if (!seen.has(id)) {
      row.remove();
      list.rows.delete(id);
    }
  }
  $("list-empty").hidden = page.builds.length > 0;
  list.next = page.next;
  $("older").disabled = !page.next;
  $("newer").disabled = list.cursors.length === 0;
  $("page-label").textContent = "page " + (list.cursors.length + 1);
  markSelectedRow();
}

function makeRow(id) {
  const li = document.createElement("li");
  li.dataset.id = String(id);
  const link = document.createElement("a");
  link.href = "#/builds/" + id;
  link.className = "row";
  for (const part of ["number", "badge", "name", "time"]) {
    const span = document.createElement("span");
    span.className = part;
    link.appendChild(span);
  }
  li.appendChild(link);
  return li;
}

function fillRow(row, build) {
  const link = row.firstChild;
  link.querySelector(".number").textContent = "#" + build.id;
  setBadge(link.querySelector(".badge"), build.status);
  link.querySelector(".name").textContent = imageName(build);
  link.querySelector(".time").textContent = formatTime(build.created_at);
  link.setAttribute("aria-label", "Build " + build.id + ", " + build.status + ", " + imageName(build));
  // The open build learns its status from its own event stream; the list is the
  // fallback when that stream is down.
  if (view.build && view.build.id === build.id && !view.stream) renderBuild(build);
}

function markSelectedRow() {
  for (const [id, row] of list.rows) {
    const selected = view.build != null && view.build.id === id;
    row.classList.toggle("selected", selected);
    if (selected) row.firstChild.setAttribute("aria-current", "true");
    else row.firstChild.removeAttribute("aria-current");
  }
}

function setUpList() {
  $("older").addEventListener("click", () => {
    if (!list.next) return;
    list.cursors.push(list.before);
    list.before = new URLSearchParams(list.next.split("?")[1]).get("before");
    refreshList();
  });
  $("newer").addEventListener("click", () => {
    if (list.cursors.length === 0) return;
    list.before = list.cursors.pop();
    refreshList();
  });
  $("status-filter").addEventListener("change", () => {
    list.cursors = [];
    list.before = null;
    refreshList();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshList();
  });
}

// ---- submitting --------------------------------------------------------------

function splitTags(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

// One KEY=VALUE a line (build args, labels).
function keyValueLines(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
}

function gitChosen() {
  return $("source-git").checked;
}

// The Dockerfile and context of an upload: a file, pasted text, or a context
// archive holding its own Dockerfile.
function appendUpload(form) {
  const file = $("dockerfile-file").files[0];
  const pasted = $("dockerfile-text").value;
  const context = $("context").files[0];
  if (file) form.append("file", file, file.name);
  else if (pasted.trim()) form.append("file", new Blob([pasted], { type: "text/plain" }), "Dockerfile");
  else if (!context) throw new Error("choose a Dockerfile, paste one, or choose a context archive");
  if (context) form.append("context", context, context.name);
}

// The repository the server fetches the context from, with its login when given.
function appendGit(form) {
  const url = $("git-url").value.trim();
  if (!url) throw new Error("the repository URL is missing");
  form.append("git", url);
  appendIfFilled(form, "git_ref", $("git-ref").value);
  appendIfFilled(form, "git_subdir", $("git-subdir").value);
  if ($("git-submodules").checked) form.append("git_submodules", "true");
  const username = $("git-username").value.trim();
  const password = $("git-password").value;
  if (username || password) {
    form.append("git_username", username);
    form.append("git_password", password);
  }
}

function appendIfFilled(form, field, value) {
  const trimmed = value.trim();
  if (trimmed) form.append(field, trimmed);
}

// Optional fields are sent only when filled, so the form works with servers that
// do not know them (they answer 400 unknown_field, shown in words).
function submitForm() {
  const form = new FormData();
  if (gitChosen()) appendGit(form);
  else appendUpload(form);
  const repository = $("repository").value.trim();
  if (!repository) throw new Error("the repository is missing");
  form.append("repository", repository);
  for (const tag of splitTags($("tags").value)) form.append("tag", tag);
  form.append("push", $("push").checked ? "true" : "false");
  for (const arg of keyValueLines($("build-args").value)) form.append("build_arg", arg);
  for (const label of keyValueLines($("labels").value)) form.append("label", label);
  appendIfFilled(form, "target", $("target").value);
  // Sent as typed: the server checks it (and says what it takes).
  appendIfFilled(form, "platform", $("platform").value);
  appendIfFilled(form, "dockerfile", $("dockerfile-path").value);
  if ($("no-cache").checked) form.append("no_cache", "true");
  appendIfFilled(form, "callback_url", $("callback-url").value);
  for (const secret of $("secrets").files) form.append("secret", secret, secret.name);
  for (const id of $("ssh").value.split(/[\s,]+/).filter(Boolean)) form.append("ssh", id);
  appendLogin(form, $("username").value, $("password").value);
  return form;
}

function showSource() {
  $("git-source").hidden = !gitChosen();
  $("upload-source").hidden = gitChosen();
}

function appendLogin(form, username, password) {
  if (username || password) {
    form.append("username", username);
    form.append("password", password);
  }
}

function setUpSubmit() {
  for (const radio of document.querySelectorAll('input[name="source"]')) {
    radio.addEventListener("change", showSource);
  }
  showSource();
  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("submit-button");
    const errorBox = $("submit-error");
    let form;
    try {
      form = submitForm();
    } catch (err) {
      showError(errorBox, "Cannot build", err);
      return;
    }
    button.disabled = true;
    button.textContent = "Submitting…";
    try {
      const build = await requestJson(API + "/builds", { method: "POST", body: form });
      clearError(errorBox);
      // Held for this build only, like the server does.
      $("password").value = "";
      $("git-password").value = "";
      if (list.before != null || $("status-filter").value) {
        list.cursors = [];
        list.before = null;
        $("status-filter").value = "";
      }
      location.hash = "#/builds/" + build.id;
      refreshList();
    } catch (err) {
      showError(errorBox, "The build was not accepted", err);
    } finally {
      button.disabled = false;
      button.textContent = "Build";
    }
  });
}

// ---- one build ---------------------------------------------------------------

// The server forgets a build's progress once it is final; the page remembers the
// last it saw, so going back to a build still shows how far its push got.
const lastProgress = new Map();

const view = {
  build: null,
  progress: null,
  stream: null, // the AbortController of the open event stream
  lastLine: 0,
  followBottom: true,
  confirmingDelete: false,
};

function selectedId() {
  const match = /^#\/builds\/(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
}

function openFromHash() {
  const id = selectedId();
  if (view.build && view.build.id === id) return;
  closeStream();
  view.build = null;
  view.progress = lastProgress.get(id) || null;
  view.lastLine = 0;
  showFollowing(true);
  view.confirmingDelete = false;
  $("log").textContent = "";
  $("log").hidden = false;
  $("log-note").hidden = true;
  clearError($("action-error"));
  $("build-view").hidden = id == null;
  $("no-build").hidden = id != null;
  markSelectedRow();
  if (id == null) return;
  $("build-heading").textContent = "Build #" + id;
  $("log-state").textContent = "loading…";
  view.build = { id, status: "queued", tags: [], repository: "" };
  loadBuild(id);
}

async function loadBuild(id) {
  try {
    const build = await requestJson(API + "/builds/" + id);
    if (selectedId() !== id) return;
    renderBuild(build);
    markSelectedRow();
    $("build-heading").focus({ preventScroll: !narrowScreen() });
    if (narrowScreen()) $("build-view").scrollIntoView({ block: "start" });
    follow(id);
  } catch (err) {
    if (selectedId() !== id) return;
    $("log-state").textContent = "";
    showError($("action-error"), "Cannot load build #" + id, err);
  }
}

function narrowScreen() {
  return window.matchMedia("(max-width: 760px)").matches;
}

function renderBuild(build) {
  view.build = build;
  if (build.progress) rememberProgress(build.id, build.progress);
  $("build-heading").textContent = "Build #" + build.id;
  setBadge($("build-status"), build.status);
  renderFacts(build);
  const error = $("build-error");
  error.hidden = !build.error;
  error.textContent = build.error ? build.error : "";
  renderStages(build);
  renderMeters(build, view.progress);
  renderActions(build);
  renderLogNote();
}

// While the log is empty, why: a build that never started (failed after
// max_queue_wait_secs, or cancelled while queued) has none, and a queued one
// says what it waits for.
function renderLogNote() {
  const build = view.build;
  const note = $("log-note");
  let text = "";
  if (build && FINAL.has(build.status) && !build.started_at) {
    text = build.error
      ? "This build never started, so it has no log: " + build.error
      : "This build never started, so it has no log.";
  } else if (build && build.status === "queued") {
    text = build.waiting_for ? "Waiting to start: " + build.waiting_for : "Waiting to start.";
  }
  const empty = $("log").textContent === "";
  note.textContent = text;
  note.hidden = !(text && empty);
  $("log").hidden = Boolean(text && empty);
}

function rememberProgress(id, progress) {
  view.progress = progress;
  lastProgress.set(id, progress);
}

function renderFacts(build) {
  const facts = [
    ["Image", imageName(build)],
    ["Push", build.push ? "yes" : "no, build only"],
    ["Created", formatTime(build.created_at)],
  ];
  if (build.started_at) facts.push(["Started", formatTime(build.started_at)]);
  if (build.finished_at) facts.push(["Took", formatDuration(build.started_at || build.created_at, build.finished_at)]);
  const platforms = build.platforms || [];
  if (build.options && build.options.platform) facts.push(["Platform", build.options.platform.split(",").join(", ")]);
  if (build.image_id && platforms.length === 0) facts.push(["Image id", build.image_id]);
  // Several platforms: the tags name one index, and each platform its own manifest.
  if (build.digest) facts.push([platforms.length ? "Index digest" : "Digest", build.digest]);
  for (const { platform, image_id, digest } of platforms) {
    facts.push([platform, `${digest} (image ${image_id})`]);
  }
  if (build.builder) facts.push(["Builder", build.builder]);
  // The statement pushed beside the image, and the key its signature verifies with.
  if (build.provenance) {
    const { digest, signed } = build.provenance;
    const kind = signed ? "signed" : "unsigned: nothing proves dockpub wrote it";
    facts.push(["Provenance", `${digest} (${kind})`, `${API}/builds/${build.id}/provenance`]);
    if (signed) facts.push(["Public key", "PEM", `${API}/provenance/public-key`]);
  }
  if (build.retry_of) facts.push(["Retry of", "#" + build.retry_of, "#/builds/" + build.retry_of]);
  const options = optionsText(build.options || {});
  if (options) facts.push(["Options", options]);
  if (build.source) {
    const { git, ref, commit } = build.source;
    // Only an https URL becomes a link: others (ssh, git://) are not pages.
    const href = /^https:\/\//i.test(git) ? git : undefined;
    facts.push(["Source", `${git} ${ref} @ ${commit.slice(0, 12)}`, href]);
  }
  if (build.trigger) {
    const { name, delivery } = build.trigger;
    facts.push(["Trigger", delivery ? `${name}, delivery ${delivery}` : `${name}, run by hand`]);
  }
  for (const [tag, by] of Object.entries(build.tag_moved_by || {})) {
    facts.push([`Tag ${tag} moved to`, "#" + by, "#/builds/" + by]);
  }
  const dl = $("build-facts");
  dl.replaceChildren();
  for (const [term, value, href] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (href) {
      const link = document.createElement("a");
      link.href = href;
      link.textContent = value;
      dd.appendChild(link);
    } else {
      dd.textContent = value;
    }
    dl.append(dt, dd);
  }
}

// The options a build was asked for, in a line: what differs from the defaults.
function optionsText(options) {
  const parts = [];
  if (options.dockerfile && options.dockerfile !== "Dockerfile") parts.push("dockerfile " + options.dockerfile);
  if (options.target) parts.push("target " + options.target);
  if (options.platform) {
    const platform = Array.isArray(options.platform) ? options.platform.join(",") : options.platform;
    parts.push("platform " + platform);
  }
  if (options.no_cache) parts.push("no cache");
  if (options.pull) parts.push("pull");
  if (options.network) parts.push("network " + options.network);
  for (const [key, value] of Object.entries(options.build_args || {})) parts.push("arg " + key + "=" + value);
  for (const [key, value] of Object.entries(options.labels || {})) {
    // A git build's source labels are the Source fact already.
    if (!SOURCE_LABELS.has(key)) parts.push("label " + key + "=" + value);
  }
  return parts.join(" · ");
}

// The stages a build went through, from its timestamps: a build that failed while
// building never reached pushing, and one with push=false skips it.
function renderStages(build) {
  const final = FINAL.has(build.status);
  const current = final ? "done" : build.status;
  const reached = {
    queued: true,
    building: Boolean(build.started_at) || build.status === "building",
    pushing: (Boolean(build.built_at) && build.push) || build.status === "pushing",
    done: final,
  };
  for (const li of $("stages").children) {
    const stage = li.dataset.stage;
    let state = reached[stage] ? "past" : "";
    if (stage === "pushing" && !build.push) state = "skipped";
    if (stage === current) state = "current status-" + build.status;
    li.className = state;
    if (stage === current) li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
    if (stage === "done") li.textContent = final ? build.status : "done";
    if (stage === "pushing") li.textContent = build.push ? "pushing" : "no push";
  }
}

function setBar(id, valueId, done, total, text) {
  const bar = $(id);
  const fraction = total > 0 ? Math.min(done / total, 1) : 0;
  bar.firstChild.style.width = (fraction * 100).toFixed(1) + "%";
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", String(total || 0));
  bar.setAttribute("aria-valuenow", String(Math.min(done || 0, total || 0)));
  bar.setAttribute("aria-valuetext", text);
  bar.classList.toggle("full", total > 0 && done >= total);
  $(valueId).textContent = text;
}

// A build of several platforms: each platform's phase, builder, step and layers.
const PHASE_WORDS = { waiting_for_slot: "waiting for a slot" };

function renderPlatformProgress(progress) {
  const list = $("platform-progress");
  const platforms = (progress && progress.platforms) || [];
  list.hidden = platforms.length === 0;
  list.replaceChildren();
  for (const p of platforms) {
    const li = document.createElement("li");
    li.dataset.platform = p.platform;
    li.dataset.phase = p.phase;
    const name = document.createElement("span");
    name.className = "platform-name";
    name.textContent = p.platform;
    const phase = document.createElement("span");
    phase.className = "phase-" + p.phase;
    const words = PHASE_WORDS[p.phase] || p.phase;
    phase.textContent = p.builder && p.phase !== "waiting_for_slot" ? words + " on " + p.builder : words;
    const counts = document.createElement("span");
    counts.className = "platform-counts";
    const parts = [];
    if (p.steps) parts.push("step " + (p.step || 0) + " of " + p.steps);
    if (p.layers_total != null) parts.push((p.layers_done || 0) + " of " + p.layers_total + " layers pushed");
    counts.textContent = parts.join(" · ");
    li.append(name, phase, counts);
    list.appendChild(li);
  }
}

function renderMeters(build, progress) {
  renderPlatformProgress(progress);
  const p = progress || {};
  const succeeded = build.status === "succeeded";
  // Build step: the daemon's "Step N/M"; a build that got past building did them all.
  const pastBuilding = Boolean(build.built_at) || build.status === "pushing";
  if (p.steps) {
    const step = pastBuilding ? p.steps : p.step || 0;
    setBar("step-bar", "step-value", step, p.steps, "step " + step + " of " + p.steps);
  } else if (pastBuilding) {
    setBar("step-bar", "step-value", 1, 1, "all steps");
  } else {
    setBar("step-bar", "step-value", 0, 0, "–");
  }

  $("layers-meter").hidden = !build.push;
  $("bytes-meter").hidden = !build.push;
  if (!build.push) return;
  // Succeeded means the registry confirmed the digest: everything was pushed,
  // whatever the last progress report (sent at most every 250 ms) had reached.
  let layersDone = p.layers_done || 0;
  let layersTotal = p.layers_total || 0;
  let bytesDone = p.bytes_done || 0;
  let bytesTotal = p.bytes_total || 0;
  if (succeeded) {
    layersTotal = Math.max(layersTotal, layersDone, 1);
    layersDone = layersTotal;
    bytesTotal = Math.max(bytesTotal, bytesDone);
    bytesDone = bytesTotal;
  }
  const layersText = p.layers_total != null || succeeded
    ? (succeeded && p.layers_total == null ? "all layers" : layersDone + " of " + layersTotal + " layers")
    : "–";
  setBar("layers-bar", "layers-value", layersDone, layersTotal, layersText);
  const bytesText = bytesTotal > 0
    ? formatBytes(bytesDone) + " of " + formatBytes(bytesTotal)
    : succeeded ? "all bytes" : "–";
  if (succeeded && bytesTotal === 0) setBar("bytes-bar", "bytes-value", 1, 1, bytesText);
  else setBar("bytes-bar", "bytes-value", bytesDone, bytesTotal, bytesText);
}

function renderActions(build) {
  const running = RUNNING.has(build.status);
  $("cancel-button").hidden = !running;
  $("retry-button").hidden = running;
  $("retry-login").hidden = running || !build.push;
  $("delete-button").hidden = running || view.confirmingDelete;
  $("delete-confirm").hidden = running || !view.confirmingDelete;
}

// ---- the event stream --------------------------------------------------------

function closeStream() {
  if (view.stream) view.stream.abort();
  view.stream = null;
}

// Reads /events with fetch (so the Bearer token can be sent) and parses SSE:
// status, log (id = line number), progress, done. A dropped stream is resumed
// with Last-Event-ID after the last line it gave.
async function follow(id) {
  closeStream();
  const controller = new AbortController();
  view.stream = controller;
  $("log-state").textContent = "following…";
  let finished = false;
  let refused = false;
  try {
    const headers = {};
    if (view.lastLine > 0) headers["Last-Event-ID"] = String(view.lastLine);
    const response = await request(API + "/builds/" + id + "/events", {
      headers,
      signal: controller.signal,
    });
    finished = await readEvents(response.body, (event) => handleEvent(id, event));
  } catch (err) {
    if (err.name === "AbortError") return;
    if (selectedId() === id) showError($("action-error"), "Lost the live log", err);
    refused = err.status >= 400 && err.status < 500;
  }
  if (view.stream !== controller) return; // another build was opened meanwhile
  view.stream = null;
  if (refused) {
    // Gone or not allowed: asking again would get the same answer.
    $("log-state").textContent = "";
  } else if (finished) {
    $("log-state").textContent = "";
    clearError($("action-error"));
  } else {
    $("log-state").textContent = "reconnecting…";
    setTimeout(() => {
      if (selectedId() === id && !view.stream) follow(id);
    }, 2000);
  }
}

async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { type: "message", data: [], id: null };
  let sawDone = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    const batch = [];
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") {
        if (event.data.length > 0) batch.push(event);
        event = { type: "message", data: [], id: null };
        continue;
      }
      if (line.startsWith(":")) continue; // a comment, e.g. a keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event.type = value;
      else if (field === "data") event.data.push(value);
      else if (field === "id") event.id = value;
    }
    if (batch.length > 0) {
      onEvent(batch);
      if (batch.some((e) => e.type === "done")) sawDone = true;
    }
  }
  return sawDone;
}

// A batch of events from one read: log lines are appended in one go, so a build
// that prints thousands of lines does not lay the page out thousands of times.
function handleEvent(id, batch) {
  if (selectedId() !== id) return;
  let text = "";
  for (const event of batch) {
    const data = event.data.join("\n");
    if (event.type === "log") {
      text += data + "\n";
      if (event.id) view.lastLine = Number(event.id);
    } else if (event.type === "progress") {
      rememberProgress(id, JSON.parse(data));
      renderMeters(view.build, view.progress);
    } else if (event.type === "status" || event.type === "done") {
      renderBuild(JSON.parse(data));
      const row = list.rows.get(id);
      if (row) fillRow(row, view.build);
    }
  }
  if (text) appendLog(text);
}

function appendLog(text) {
  const log = $("log");
  // Where the reader is now, not only what the last scroll event said: lines
  // can arrive after a scroll up and before its event.
  const follow = view.followBottom && atBottom(log);
  log.appendChild(document.createTextNode(text));
  if ($("log-note").hidden === false) renderLogNote();
  if (follow) log.scrollTop = log.scrollHeight;
  else showFollowing(false);
}

function atBottom(log) {
  return log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
}

function showFollowing(following) {
  view.followBottom = following;
  $("log-bottom").hidden = following;
}

function setUpLog() {
  const log = $("log");
  // Following stops when the reader scrolls up and starts again at the bottom.
  log.addEventListener("scroll", () => showFollowing(atBottom(log)));
  $("log-bottom").addEventListener("click", () => {
    log.scrollTop = log.scrollHeight;
    showFollowing(true);
  });
}

// ---- actions -----------------------------------------------------------------

async function act(label, path, options) {
  const id = view.build.id;
  const errorBox = $("action-error");
  const buttons = document.querySelectorAll("#build-actions button, #retry-login button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    const result = await requestJson(API + "/builds/" + id + path, options);
    clearError(errorBox);
    return result;
  } catch (err) {
    showError(errorBox, label + " failed", err);
    return undefined;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function setUpActions() {
  $("cancel-button").addEventListener("click", async () => {
    const build = await act("Cancel", "/cancel", { method: "POST" });
    if (build && selectedId() === build.id) renderBuild(build);
    refreshList();
  });
  const retry = async (form) => {
    const build = await act("Retry", "/retry", { method: "POST", body: form });
    if (build) {
      location.hash = "#/builds/" + build.id;
      refreshList();
    }
  };
  $("retry-button").addEventListener("click", () => retry(undefined));
  $("retry-login-button").addEventListener("click", () => {
    const form = new FormData();
    appendLogin(form, $("retry-username").value, $("retry-password").value);
    $("retry-password").value = "";
    retry(form);
  });
  $("delete-button").addEventListener("click", () => {
    view.confirmingDelete = true;
    renderActions(view.build);
    $("delete-no").focus();
  });
  $("delete-no").addEventListener("click", () => {
    view.confirmingDelete = false;
    renderActions(view.build);
    $("delete-button").focus();
  });
  $("delete-yes").addEventListener("click", async () => {
    const id = view.build.id;
    const deleted = await act("Delete", "", { method: "DELETE" });
    view.confirmingDelete = false;
    if (deleted === null) {
      closeStream();
      location.hash = "#/";
      showNotice("Build #" + id + " deleted.");
      refreshList();
    } else {
      renderActions(view.build);
    }
  });
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  setTimeout(() => {
    if (notice.textContent === text) notice.textContent = "";
  }, 5000);
}

// ---- builders ----------------------------------------------------------------

async function refreshBuilders() {
  try {
    const answer = await requestJson(API + "/builders");
    renderBuilders(answer.builders);
    clearError($("builders-error"));
  } catch (err) {
    showError($("builders-error"), "Cannot load the builders", err);
  } finally {
    setTimeout(pollBuilders, LIST_POLL_MS);
  }
}

function pollBuilders() {
  // Like the list: a hidden tab waits and catches up when shown again.
  if (document.hidden) setTimeout(pollBuilders, LIST_POLL_MS);
  else refreshBuilders();
}

// One line per builder: name, up or down, running of slots, builds done and
// platforms; the last error under it while it is down, and its silent builds.
function renderBuilders(builders) {
  const items = builders.map((builder) => {
    const li = document.createElement("li");
    li.dataset.builder = builder.name;
    const badge = document.createElement("span");
    badge.className = "badge " + (builder.up ? "status-succeeded" : "status-failed");
    badge.textContent = builder.up ? "up" : "down";
    const name = document.createElement("strong");
    name.textContent = builder.name;
    const load = document.createElement("span");
    load.className = "note";
    const platforms = builder.platforms.length ? builder.platforms.join(", ") : "platform unknown";
    load.textContent = `${builder.running}/${builder.slots} running · ${builder.builds_done} done · ${platforms}`;
    li.append(badge, " ", name, " ", load);
    li.title = builder.host + (builder.tls ? " (TLS)" : "");
    if (!builder.up && builder.last_error) {
      const error = document.createElement("p");
      error.className = "error";
      error.textContent = builder.last_error;
      li.appendChild(error);
    }
    // A build (or its push) silent for over a minute: the daemon or registry may be stuck.
    for (const silent of builder.silent_builds || []) {
      const note = document.createElement("p");
      note.className = "error";
      note.dataset.silentBuild = silent.id;
      const since = new Date(silent.silent_since).toLocaleTimeString();
      note.textContent = `build #${silent.id} silent since ${since}`;
      li.appendChild(note);
    }
    return li;
  });
  $("builder-list").replaceChildren(...items);
}

// ---- triggers ----------------------------------------------------------------

// One item per trigger, kept across refreshes so a ref being typed stays.
const triggerItems = new Map();

async function refreshTriggers() {
  try {
    const answer = await requestJson(API + "/triggers");
    renderTriggers(answer.triggers);
    clearError($("triggers-error"));
  } catch (err) {
    showError($("triggers-error"), "Cannot load the triggers", err);
  } finally {
    setTimeout(pollTriggers, LIST_POLL_MS);
  }
}

function pollTriggers() {
  if (document.hidden) setTimeout(pollTriggers, LIST_POLL_MS);
  else refreshTriggers();
}

function renderTriggers(triggers) {
  const ul = $("trigger-list");
  const seen = new Set();
  triggers.forEach((trigger, index) => {
    seen.add(trigger.name);
    let item = triggerItems.get(trigger.name);
    if (!item) {
      item = makeTriggerItem(trigger.name);
      triggerItems.set(trigger.name, item);
    }
    fillTriggerItem(item, trigger);
    if (ul.children[index] !== item) ul.insertBefore(item, ul.children[index] || null);
  });
  for (const [name, item] of triggerItems) {
    if (!seen.has(name)) {
      item.remove();
      triggerItems.delete(name);
    }
  }
  $("triggers-empty").hidden = triggers.length > 0;
}

function makeTriggerItem(name) {
  const li = document.createElement("li");
  li.dataset.trigger = name;
  const title = document.createElement("strong");
  title.textContent = name;
  const facts = document.createElement("dl");
  facts.className = "facts";
  const form = document.createElement("form");
  form.className = "run";
  const label = document.createElement("label");
  label.className = "visually-hidden";
  label.textContent = "Ref of " + name + " to build";
  const input = document.createElement("input");
  input.name = "ref";
  input.autocomplete = "off";
  input.spellcheck = false;
  input.placeholder = "main, v1.2 or a commit SHA";
  input.id = "run-ref-" + name;
  label.htmlFor = input.id;
  const button = document.createElement("button");
  button.type = "submit";
  button.id = "run-button-" + name;
  button.textContent = "Run";
  form.append(label, input, button);
  const error = document.createElement("p");
  error.className = "error";
  error.setAttribute("role", "alert");
  error.hidden = true;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    runTrigger(name, input, button, error);
  });
  li.append(title, facts, form, error);
  return li;
}

function fillTriggerItem(li, trigger) {
  const facts = [
    ["Repository", trigger.git],
    ["Refs", trigger.refs.join(", ")],
    ["Image", trigger.repository + ":" + trigger.tags.join(", ")],
    ["Last delivery", lastDeliveryText(trigger.last_delivery)],
  ];
  const last = trigger.last_build;
  facts.push(last != null ? ["Last build", "#" + last, "#/builds/" + last] : ["Last build", "none yet"]);
  const dl = li.querySelector("dl");
  dl.replaceChildren();
  for (const [term, value, href] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (href) {
      const link = document.createElement("a");
      link.href = href;
      link.textContent = value;
      dd.appendChild(link);
    } else {
      dd.textContent = value;
    }
    dl.append(dt, dd);
  }
}

function lastDeliveryText(delivery) {
  if (!delivery) return "none yet";
  let text = delivery.ref + " @ " + delivery.commit.slice(0, 12) + ", " + delivery.outcome;
  if (delivery.build_id != null) text += " (#" + delivery.build_id + ")";
  return text + ", " + formatTime(delivery.received_at);
}

async function runTrigger(name, input, button, errorBox) {
  const ref = input.value.trim();
  if (!ref) {
    showError(errorBox, "Cannot run", new Error("name a branch, tag or commit to build"));
    return;
  }
  button.disabled = true;
  try {
    const build = await requestJson(API + "/triggers/" + encodeURIComponent(name) + "/run", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ref }),
    });
    clearError(errorBox);
    location.hash = "#/builds/" + build.id;
    refreshList();
  } catch (err) {
    showError(errorBox, "The run was not accepted", err);
  } finally {
    button.disabled = false;
  }
}

// ---- start -------------------------------------------------------------------

function start() {
  setUpToken();
  setUpList();
  setUpSubmit();
  setUpLog();
  setUpActions();
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
  refreshList();
  refreshBuilders();
  refreshTriggers();
}

start();
