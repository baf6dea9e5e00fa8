// qkdmeet browser client: one ES module, no build step, no third-party code.
//
// Speaks the signalling protocol of ../PROTOCOL.md over a WebSocket at /ws:
//   join -> joined; then one send-only RTCPeerConnection per published stream set
//   ("camera": VP8 video + Opus audio, "screen": one video track), offered by us
//   with `publish`, and one receive-only RTCPeerConnection per remote stream set,
//   offered by the server with `subscribe` and answered with `answer`.
// ICE is not trickled: every SDP is sent once ICE gathering has completed.
//
// URL parameters (demo, tests, bookmarks): ?room=R&name=N fill the join form;
// &autojoin=1 joins at once; &camera=0 / &microphone=0 join without them.
// The room's invite (or moderator) secret comes in the fragment, #invite=S or
// #moderator=S, as the operator's invite link carries it: a fragment is never
// sent to the server in an HTTP request. It goes to the server only inside the
// WebSocket `join`; the session token the server answers with authenticates
// this page's HTTP requests (documents), as `Authorization: Bearer`.
//
// Nothing the server or another participant sends (names, chat, file names,
// alarms) is ever parsed as HTML: every such string goes in with textContent.
//
// Meeting controls (PROTOCOL.md): the participant list shows each participant's
// microphone and camera state (its `mute` messages; a device the page does not
// have is announced muted after joining), raised hands (`hand`) and the active
// speaker (`speaker`, chosen by the server from the RFC 6464 audio levels the
// browser puts in every audio packet), whose tile is highlighted and put first,
// at twice the size. A moderator's page has buttons to mute a participant's
// microphone or camera (`mute_participant`), remove a participant and lock the
// room; a page muted by a moderator obeys (its track is disabled) and says so.
//
// window.qkdmeet is a small hook for tests and the demo: `state` (plain data, kept
// current), `stats()` (per-PeerConnection inbound/outbound RTP counters from
// getStats), and the actions the buttons trigger.

const ICE_GATHERING_TIMEOUT_MS = 5000;
const CAMERA_CONSTRAINTS = {
  width: { ideal: 640 },
  height: { ideal: 480 },
  frameRate: { ideal: 15, max: 30 },
};
const SCREEN_CONSTRAINTS = { frameRate: { ideal: 15, max: 15 } };
// After an unexpected loss of the signalling socket (server restart, a link that
// stalled for lack of key), join again after these delays, keeping camera and
// screen; then give up and show the join form.
const REJOIN_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 8000, 8000, 8000];

// ---------------------------------------------------------------- state

/** Plain, serialisable view of the client; tests read it through window.qkdmeet.state. */
const state = {
  phase: "idle", // idle | joining | joined | rejoining | left | closed
  id: null,
  moderator: false, // joined with the moderator link
  locked: false,
  room: null,
  name: null,
  participants: [], // [{id, name, muted: {audio, video}, hand, speaking, self, ...}]
  speaker: null, // id of the room's active speaker (server's `speaker`), or null
  hand: false, // our own hand is raised
  mutedBy: { audio: null, video: null }, // who (a moderator's id) muted our devices
  chat: [], // [{from, name, text, ts}]
  documents: [], // [{id, name, size, content_type, from, url}]
  link: null, // last `link` object, or null
  linkLevel: "unknown", // green | amber | red | unknown
  bitrates: null, // {camera, screen, audio}
  appliedBitrates: {}, // pc name -> [{kind, maxBitrate}]
  streams: {}, // pc name -> {role, kind, from, name, connectionState}
  screenSharing: false,
  muted: { audio: false, video: false },
  errors: [], // every error shown in the status bar
  status: "Not connected",
};

/** pc name -> {pc, role: "publish"|"subscribe", kind, from, name, stream} */
const pcs = new Map();
/** participant id -> {id, name, muted, self, tile, video} */
const people = new Map();

let ws = null;
/** The room's invite or moderator secret (from the link's fragment or the form). */
let secret = "";
/** The session token of the current join (HTTP requests). */
let sessionToken = null;
let localStream = null;
let screenStream = null;
let leaving = false;
let rejoinAttempt = 0;
let rejoinTimer = null;
/** stream set kind ("camera" | "screen") -> name of the pc publishing it now */
const published = {};
/** stream set kind -> how many times it has been published */
const publishCount = {};
let republishFailures = 0;
const MAX_REPUBLISH = 5; // consecutive failed publish connections before giving up

const $ = (id) => document.getElementById(id);

/** The secret in an invite link (…#invite=S / #moderator=S), or the text itself. */
function secretFrom(text) {
  const value = (text || "").trim();
  const hash = value.includes("#") ? value.slice(value.indexOf("#") + 1) : value;
  const params = new URLSearchParams(hash);
  return params.get("moderator") || params.get("invite") || (value.includes("=") ? "" : value);
}

function authHeaders() {
  return sessionToken ? { Authorization: `Bearer ${sessionToken}` } : {};
}

// ---------------------------------------------------------------- status bar

function setStatus(text, level = "info") {
  const bar = $("status");
  bar.textContent = text;
  bar.dataset.level = level;
  state.status = text;
  if (level === "error") {
    state.errors.push(text);
    console.warn("qkdmeet:", text);
  }
}

function errorText(err) {
  if (!err) return "unknown error";
  if (err.name && err.message) return `${err.name}: ${err.message}`;
  return String(err.message || err);
}

// ---------------------------------------------------------------- signalling

function send(message) {
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    setStatus(`Cannot send ${message.type}: not connected to the server`, "error");
    return false;
  }
  ws.send(JSON.stringify(message));
  return true;
}

function openSocket() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${scheme}://${location.host}/ws`);
    socket.addEventListener("open", () => resolve(socket), { once: true });
    socket.addEventListener("error", () => reject(new Error("WebSocket connection failed")), {
      once: true,
    });
  });
}

async function onMessage(event) {
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch {
    setStatus("Malformed message from the server (not JSON)", "error");
    return;
  }
  try {
    await handle(msg);
  } catch (err) {
    setStatus(`Error handling ${msg.type}: ${errorText(err)}`, "error");
  }
}

async function handle(msg) {
  switch (msg.type) {
    case "joined":
      return onJoined(msg);
    case "participant_joined":
      addPerson(msg);
      return renderPeople();
    case "hand":
      return onHand(msg);
    case "speaker":
      state.speaker = msg.id ?? null;
      return renderPeople();
    case "closed":
    case "removed":
      return endedByServer(msg.type === "closed"
        ? "The operator closed this room" : "A moderator removed you from the room");
    case "locked":
      state.locked = Boolean(msg.locked);
      setStatus(state.locked ? "The room is locked: nobody else can join"
        : "The room is unlocked", "info");
      return updateControls();
    case "document_removed":
      return removeDocument(msg.id);
    case "participant_left":
      return removePerson(msg.id);
    case "answer":
      return onPublishAnswer(msg);
    case "subscribe":
      return onSubscribe(msg);
    case "unsubscribe":
      return closePc(msg.pc);
    case "chat":
      return addChat(msg);
    case "mute":
      return onRemoteMute(msg);
    case "bitrate":
      state.bitrates = { camera: msg.camera, screen: msg.screen, audio: msg.audio };
      renderBitrates();
      return applyBitrates();
    case "document":
      return addDocument(msg.document);
    case "link":
      return renderLink(msg.link);
    case "error":
      if (state.phase === "joining" || state.phase === "rejoining") {
        return joinRefused(msg.reason);
      }
      if (/^unpublish: no published pc/.test(msg.reason)) {
        // Benign race: the server had already dropped the failed publication.
        return console.debug("qkdmeet:", msg.reason);
      }
      return setStatus(`Server: ${msg.reason}`, "error");
    default:
      console.debug("qkdmeet: ignoring message", msg.type);
  }
}

// ---------------------------------------------------------------- join / leave

async function join(room, name, { camera = true, microphone = true } = {}) {
  if (["joining", "joined", "rejoining"].includes(state.phase)) return;
  leaving = false;
  state.phase = "joining";
  state.errors = [];
  $("join-button").disabled = true;
  setStatus("Starting camera and microphone…");
  localStream = null;
  if (camera || microphone) {
    try {
      localStream = await navigator.mediaDevices.getUserMedia({
        video: camera ? CAMERA_CONSTRAINTS : false,
        audio: microphone,
      });
    } catch (err) {
      setStatus(`No camera/microphone (${errorText(err)}); joining to watch and listen only`,
        "error");
    }
  }
  if (localStream && !localStream.getVideoTracks().length) {
    // A camera stream set carries video (PROTOCOL.md): a microphone alone goes out
    // with a still card showing the speaker's initials.
    localStream.addTrack(placeholderVideoTrack(name));
  }
  setStatus("Connecting to the conference server…");
  try {
    ws = await openSocket();
  } catch (err) {
    stopLocalMedia();
    state.phase = "idle";
    $("join-button").disabled = false;
    setStatus(`Cannot reach the conference server: ${errorText(err)}`, "error");
    return;
  }
  state.room = room;
  state.name = name;
  rejoinAttempt = 0;
  sendJoin();
}

function sendJoin() {
  ws.addEventListener("message", onMessage);
  ws.addEventListener("close", onSocketClosed);
  send({ type: "join", room: state.room, name: state.name, secret });
}

async function onJoined(msg) {
  state.phase = "joined";
  state.id = msg.id;
  state.room = msg.room;
  state.moderator = Boolean(msg.moderator);
  state.locked = Boolean(msg.locked);
  state.speaker = msg.speaker ?? null;
  state.hand = false;
  state.mutedBy = { audio: null, video: null };
  sessionToken = msg.token || null;
  people.clear();
  $("grid").replaceChildren();
  addPerson({ id: msg.id, name: state.name, self: true });
  people.get(msg.id).moderator = state.moderator;
  for (const p of msg.participants || []) {
    if (p.id !== msg.id) addPerson(p);
  }
  renderPeople();
  state.bitrates = msg.bitrates || null;
  renderBitrates();
  state.documents = [];
  $("docs").replaceChildren();
  for (const doc of msg.documents || []) addDocument(doc);
  renderLink(msg.link ?? null);
  $("join-view").hidden = true;
  $("call-view").hidden = false;
  $("room-label").hidden = false;
  $("room-label").textContent = `Room: ${msg.room}`;
  $("join-button").disabled = false;
  updateControls();
  history.replaceState(null, "", `?room=${encodeURIComponent(msg.room)}${location.hash}`);
  setStatus(`Joined room ${msg.room} as ${state.name}`, "ok");
  const self = people.get(msg.id);
  self.muted = shownMuted();
  renderPeople();
  const rejoined = rejoinAttempt > 0;
  rejoinAttempt = 0;
  if (localStream) {
    self.video.srcObject = localStream;
    const camera = localStream.getVideoTracks().some((t) => !t.placeholder);
    self.tile.classList.toggle("tile-mirror", camera); // a mirror, as users expect
    await publish("camera", localStream);
  }
  // muted, or no such device: the others' lists show it off
  for (const kind of ["audio", "video"]) {
    if (self.muted[kind]) send({ type: "mute", kind, muted: true });
  }
  if (rejoined && screenStream) await publish("screen", screenStream);
}

/** The server refused our `join` (e.g. a full room): back to the form, reason shown. */
function joinRefused(reason) {
  leaving = true;
  teardown();
  state.phase = "idle";
  setStatus(`Cannot join: ${reason}`, "error");
}

/** The server ended our participation (room closed, removed): no rejoin. */
function endedByServer(text) {
  leaving = true;
  teardown();
  state.phase = "closed";
  setStatus(text, "error");
}

function leave() {
  leaving = true;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "leave" }));
  teardown();
  setStatus("You left the conference");
  state.phase = "left";
}

function onSocketClosed() {
  if (leaving) return;
  ws = null;
  if (state.phase === "joined" || state.phase === "rejoining") {
    scheduleRejoin();
    return;
  }
  teardown();
  state.phase = "closed";
  setStatus("Connection to the conference server closed", "error");
}

/** Lost the server mid-call: drop every PeerConnection and join again, media kept. */
function scheduleRejoin() {
  for (const name of [...pcs.keys()]) closePc(name);
  for (const person of [...people.values()]) {
    if (!person.self) removePerson(person.id);
  }
  state.phase = "rejoining";
  if (rejoinAttempt >= REJOIN_DELAYS_MS.length) {
    teardown();
    state.phase = "closed";
    setStatus("Connection to the conference server lost; join again", "error");
    return;
  }
  const delay = REJOIN_DELAYS_MS[rejoinAttempt];
  rejoinAttempt += 1;
  setStatus(`Connection to the server lost; rejoining in ${delay / 1000} s `
    + `(attempt ${rejoinAttempt} of ${REJOIN_DELAYS_MS.length})`, "error");
  rejoinTimer = setTimeout(rejoin, delay);
}

async function rejoin() {
  rejoinTimer = null;
  try {
    ws = await openSocket();
  } catch {
    ws = null;
    if (state.phase === "rejoining") scheduleRejoin();
    return;
  }
  if (state.phase !== "rejoining") { // left meanwhile
    ws.close();
    ws = null;
    return;
  }
  sendJoin();
}

function teardown() {
  sessionToken = null;
  clearTimeout(rejoinTimer);
  rejoinTimer = null;
  rejoinAttempt = 0;
  if (ws) {
    ws.removeEventListener("close", onSocketClosed);
    ws.close();
    ws = null;
  }
  for (const name of [...pcs.keys()]) closePc(name);
  stopLocalMedia();
  if (screenStream) {
    screenStream.getTracks().forEach((t) => t.stop());
    screenStream = null;
  }
  state.screenSharing = false;
  people.clear();
  state.participants = [];
  $("grid").replaceChildren();
  $("stage").replaceChildren();
  $("stage").hidden = true;
  closeViewer();
  $("call-view").hidden = true;
  $("room-label").hidden = true;
  $("join-view").hidden = false;
  $("join-button").disabled = false;
}

function stopLocalMedia() {
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  clearInterval(placeholderTimer);
  placeholderTimer = null;
  state.muted = { audio: false, video: false };
}

const PLACEHOLDER_FPS = 2;
let placeholderTimer = null;

/** A low-rate video track of a card with the participant's initials (no camera). */
function placeholderVideoTrack(name) {
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const ctx = canvas.getContext("2d");
  const initials = initialsOf(name);
  let tick = 0;
  const draw = () => {
    // Repainted every frame: a canvas only yields frames when it changes.
    tick += 1;
    ctx.fillStyle = "#1b2430";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = tick % 2 ? "#1b2431" : "#1b2430"; // invisible change
    ctx.fillRect(0, 0, 1, 1);
    ctx.fillStyle = "#e6ebf0";
    ctx.font = "bold 96px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(initials, canvas.width / 2, canvas.height / 2);
  };
  draw();
  clearInterval(placeholderTimer);
  placeholderTimer = setInterval(draw, 1000 / PLACEHOLDER_FPS);
  const track = canvas.captureStream(PLACEHOLDER_FPS).getVideoTracks()[0];
  track.placeholder = true;
  return track;
}

// ---------------------------------------------------------------- WebRTC

/** Resolve once ICE gathering is complete (or after a timeout: send what we have). */
function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function preferVp8(transceiver) {
  if (!transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities("video");
  if (!caps) return;
  const vp8 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "video/vp8");
  const rtx = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "video/rtx");
  if (vp8.length) transceiver.setCodecPreferences([...vp8, ...rtx]);
}

function trackPc(name, entry) {
  pcs.set(name, entry);
  const summary = { role: entry.role, kind: entry.kind, from: entry.from, name: entry.name,
    connectionState: entry.pc.connectionState };
  state.streams[name] = summary;
  entry.pc.addEventListener("connectionstatechange", () => {
    summary.connectionState = entry.pc.connectionState;
    if (entry.pc.connectionState === "connected" && entry.role === "publish") {
      republishFailures = 0;
    }
    if (entry.pc.connectionState === "failed") {
      if (entry.role === "publish") republish(name, entry);
      else setStatus(`Media connection ${name} failed`, "error");
    }
    renderPeople();
  });
}

/**
 * A publish connection failed (e.g. ICE consent lost while the link was down):
 * withdraw it and publish the same stream again on a fresh PeerConnection.
 */
async function republish(name, entry) {
  if (pcs.get(name) !== entry || state.phase !== "joined") return;
  closePc(name);
  send({ type: "unpublish", pc: name });
  const current = entry.kind === "screen" ? screenStream : localStream;
  if (entry.stream !== current || !current.getTracks().some((t) => t.readyState === "live")) {
    return;
  }
  republishFailures += 1;
  if (republishFailures > MAX_REPUBLISH) {
    setStatus(`Media connection ${name} failed ${MAX_REPUBLISH} times; rejoin to retry`,
      "error");
    return;
  }
  setStatus(`Media connection ${name} failed; publishing again`, "error");
  await publish(entry.kind, current);
}

/** Offer a send-only PeerConnection carrying `stream` as stream set `kind`. */
async function publish(kind, stream) {
  // One stream set of each kind per participant; a new pc name each time, so a
  // republish never collides with a publication the server still holds.
  if (published[kind]) closePc(published[kind]);
  publishCount[kind] = (publishCount[kind] || 0) + 1;
  const name = publishCount[kind] === 1 ? kind : `${kind}-${publishCount[kind]}`;
  published[kind] = name;
  const pc = new RTCPeerConnection({ iceServers: [] });
  trackPc(name, { pc, role: "publish", kind, from: state.id, name: state.name, stream });
  const video = stream.getVideoTracks()[0];
  const audio = kind === "camera" ? stream.getAudioTracks()[0] : undefined;
  if (video) {
    if (kind === "screen") video.contentHint = "detail";
    preferVp8(pc.addTransceiver(video, { direction: "sendonly", streams: [stream] }));
  }
  if (audio) pc.addTransceiver(audio, { direction: "sendonly", streams: [stream] });
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc);
  if (pcs.get(name)?.pc !== pc) return; // closed while gathering
  send({ type: "publish", pc: name, kind, sdp: pc.localDescription.sdp });
}

async function onPublishAnswer(msg) {
  const entry = pcs.get(msg.pc);
  if (!entry || entry.role !== "publish") {
    console.debug("qkdmeet: answer for unknown pc", msg.pc);
    return;
  }
  await entry.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
  await applyBitrates();
}

/** A remote stream set offered by the server: answer with a receive-only PeerConnection. */
async function onSubscribe(msg) {
  closePc(msg.pc);
  const pc = new RTCPeerConnection({ iceServers: [] });
  const stream = new MediaStream();
  const entry = { pc, role: "subscribe", kind: msg.kind, from: msg.from, name: msg.name, stream };
  trackPc(msg.pc, entry);
  pc.addEventListener("track", (ev) => {
    stream.addTrack(ev.track);
    ev.track.addEventListener("ended", () => stream.removeTrack(ev.track));
    attachRemote(msg.pc, entry);
  });
  await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await iceGatheringComplete(pc);
  if (pcs.get(msg.pc)?.pc !== pc) return;
  send({ type: "answer", pc: msg.pc, sdp: pc.localDescription.sdp });
  attachRemote(msg.pc, entry);
}

function attachRemote(pcName, entry) {
  if (entry.kind === "screen") {
    showOnStage(pcName, entry.stream, `${entry.name || "Someone"} is presenting`);
  } else {
    if (!people.has(entry.from)) {
      addPerson({ id: entry.from, name: entry.name });
      renderPeople();
    }
    const person = people.get(entry.from);
    if (person.video.srcObject !== entry.stream) person.video.srcObject = entry.stream;
    playVideo(person.video);
  }
  renderPeople();
}

function playVideo(video) {
  const p = video.play();
  if (p && p.catch) {
    p.catch((err) => {
      if (err.name === "AbortError") return; // a newer srcObject replaced this one
      // Autoplay with sound refused: play muted and tell the user how to hear.
      video.muted = true;
      video.play().catch(() => {});
      setStatus("Audio blocked by the browser; click a video to unmute", "error");
    });
  }
}

function closePc(name) {
  const entry = pcs.get(name);
  if (!entry) return;
  pcs.delete(name);
  delete state.streams[name];
  delete state.appliedBitrates[name];
  entry.pc.close();
  if (entry.role === "subscribe") {
    if (entry.kind === "screen") removeFromStage(name);
    else {
      const person = people.get(entry.from);
      if (person && person.video.srcObject === entry.stream) person.video.srcObject = null;
    }
  }
  renderPeople();
}

/** Apply the server's caps to every sender (encodings[0].maxBitrate). */
async function applyBitrates() {
  const caps = state.bitrates;
  if (!caps) return;
  for (const [name, entry] of pcs) {
    if (entry.role !== "publish") continue;
    const applied = [];
    for (const sender of entry.pc.getSenders()) {
      if (!sender.track) continue;
      const kind = sender.track.kind === "audio" ? "audio" : entry.kind;
      const cap = caps[kind];
      if (!Number.isFinite(cap) || cap < 0) continue;
      if (cap === 0 && kind === "audio") continue; // audio is never paused
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length === 0) continue; // not negotiated yet
      // a cap of 0 pauses the video (the key cannot carry it): the encoding stops
      params.encodings[0].active = cap > 0;
      if (cap > 0) params.encodings[0].maxBitrate = cap;
      try {
        await sender.setParameters(params);
        const enc = sender.getParameters().encodings[0];
        applied.push({ kind, maxBitrate: enc.maxBitrate, active: enc.active });
      } catch (err) {
        setStatus(`Cannot apply ${kind} bitrate cap: ${errorText(err)}`, "error");
      }
    }
    state.appliedBitrates[name] = applied;
  }
}

/** Per-PeerConnection RTP counters from getStats (for tests and diagnostics). */
async function stats() {
  const out = {};
  for (const [name, entry] of pcs) {
    const report = await entry.pc.getStats();
    const inbound = [];
    const outbound = [];
    report.forEach((s) => {
      if (s.type === "inbound-rtp") {
        inbound.push({
          kind: s.kind,
          ssrc: s.ssrc,
          packetsReceived: s.packetsReceived ?? 0,
          packetsLost: s.packetsLost ?? 0,
          bytesReceived: s.bytesReceived ?? 0,
          framesReceived: s.framesReceived ?? 0,
          framesDecoded: s.framesDecoded ?? 0,
          frameWidth: s.frameWidth ?? 0,
          frameHeight: s.frameHeight ?? 0,
          framesPerSecond: s.framesPerSecond ?? 0,
          totalSamplesReceived: s.totalSamplesReceived ?? 0,
        });
      } else if (s.type === "outbound-rtp") {
        outbound.push({
          kind: s.kind,
          ssrc: s.ssrc,
          packetsSent: s.packetsSent ?? 0,
          bytesSent: s.bytesSent ?? 0,
          framesEncoded: s.framesEncoded ?? 0,
          framesSent: s.framesSent ?? 0,
          frameWidth: s.frameWidth ?? 0,
          frameHeight: s.frameHeight ?? 0,
          targetBitrate: s.targetBitrate ?? 0,
        });
      }
    });
    const maxBitrates = entry.role === "publish"
      ? entry.pc.getSenders().filter((s) => s.track).map((s) => ({
        kind: s.track.kind,
        maxBitrate: s.getParameters().encodings?.[0]?.maxBitrate ?? null,
        active: s.getParameters().encodings?.[0]?.active ?? true,
      }))
      : [];
    out[name] = {
      role: entry.role,
      kind: entry.kind,
      from: entry.from,
      name: entry.name,
      connectionState: entry.pc.connectionState,
      inbound,
      outbound,
      maxBitrates,
    };
  }
  return out;
}

// ---------------------------------------------------------------- screen share

async function startScreenShare(stream = null) {
  if (state.phase !== "joined" || screenStream) return;
  try {
    screenStream = stream
      || await navigator.mediaDevices.getDisplayMedia({ video: SCREEN_CONSTRAINTS, audio: false });
  } catch (err) {
    setStatus(`Screen sharing not started: ${errorText(err)}`, "error");
    return;
  }
  const track = screenStream.getVideoTracks()[0];
  if (!track) {
    setStatus("Screen sharing not started: no video track", "error");
    screenStream = null;
    return;
  }
  track.addEventListener("ended", () => stopScreenShare());
  state.screenSharing = true;
  updateControls();
  showOnStage("local-screen", screenStream, "You are presenting", true);
  await publish("screen", screenStream);
}

function stopScreenShare() {
  if (!screenStream) return;
  screenStream.getTracks().forEach((t) => t.stop());
  screenStream = null;
  state.screenSharing = false;
  const name = published.screen;
  delete published.screen;
  if (name && pcs.has(name)) {
    closePc(name);
    if (state.phase === "joined") send({ type: "unpublish", pc: name });
  }
  removeFromStage("local-screen");
  updateControls();
}

// ---------------------------------------------------------------- mute

/** Whether this page has a microphone (`audio`) or a real camera (`video`). */
function hasDevice(kind) {
  if (!localStream) return false;
  if (kind === "audio") return localStream.getAudioTracks().length > 0;
  return localStream.getVideoTracks().some((t) => !t.placeholder);
}

/** Our devices as the others see them: muted, or absent. */
function shownMuted() {
  return { audio: state.muted.audio || !hasDevice("audio"),
    video: state.muted.video || !hasDevice("video") };
}

/** Disable (or enable) our microphone or camera track(s); false without one. */
function applyLocalMute(kind, muted) {
  if (!localStream) return false;
  const tracks = kind === "audio" ? localStream.getAudioTracks() : localStream.getVideoTracks();
  if (!tracks.length) return false;
  tracks.forEach((t) => {
    t.enabled = !muted;
  });
  state.muted[kind] = muted;
  const self = people.get(state.id);
  if (self) self.muted[kind] = shownMuted()[kind];
  updateControls();
  renderPeople();
  return true;
}

function setMuted(kind, muted) {
  if (!applyLocalMute(kind, muted)) return;
  if (!muted) state.mutedBy[kind] = null; // unmuting lifts a moderator's mute
  if (state.phase === "joined") send({ type: "mute", kind, muted }); // else sent on rejoin
}

function onRemoteMute(msg) {
  const person = people.get(msg.id);
  if (!person || !(msg.kind in person.muted)) return;
  if (person.self && msg.by) {
    // a moderator muted us: obey (the server already forwards nothing of it)
    applyLocalMute(msg.kind, Boolean(msg.muted));
    state.mutedBy[msg.kind] = msg.muted ? msg.by : null;
    const what = msg.kind === "audio" ? "microphone" : "camera";
    setStatus(`${personName(msg.by)} (moderator) turned your ${what} off; `
      + `${msg.kind === "audio" ? "unmute" : "start"} it to be ${
        msg.kind === "audio" ? "heard" : "seen"} again`, "info");
  }
  person.muted[msg.kind] = person.self ? shownMuted()[msg.kind] : Boolean(msg.muted);
  renderPeople();
}

function onHand(msg) {
  const person = people.get(msg.id);
  if (!person) return;
  person.hand = Boolean(msg.raised);
  person.handAt = person.hand ? (Number.isFinite(msg.at) ? msg.at : Date.now() / 1000) : null;
  if (person.self) {
    state.hand = person.hand;
    updateControls();
  }
  renderPeople();
}

function setHand(raised) {
  if (state.phase !== "joined") return false;
  return send({ type: "hand", raised: Boolean(raised) });
}

/** Moderator: mute another participant's microphone (`audio`) or camera (`video`). */
function muteParticipant(id, kind) {
  return send({ type: "mute_participant", id, kind });
}

function removeParticipant(id) {
  return send({ type: "remove", id });
}

function setLocked(locked) {
  return send({ type: "lock", locked: Boolean(locked) });
}

function updateControls() {
  const hasAudio = Boolean(localStream && localStream.getAudioTracks().length);
  const hasVideo = Boolean(localStream
    && localStream.getVideoTracks().some((t) => !t.placeholder));
  const audio = $("btn-audio");
  audio.disabled = !hasAudio;
  audio.setAttribute("aria-pressed", String(state.muted.audio));
  audio.textContent = state.muted.audio ? "Unmute microphone" : "Mute microphone";
  const video = $("btn-video");
  video.disabled = !hasVideo;
  video.setAttribute("aria-pressed", String(state.muted.video));
  video.textContent = state.muted.video ? "Start camera" : "Stop camera";
  const screen = $("btn-screen");
  screen.setAttribute("aria-pressed", String(state.screenSharing));
  screen.textContent = state.screenSharing ? "Stop sharing" : "Share screen";
  const lock = $("btn-lock");
  lock.hidden = !state.moderator;
  lock.setAttribute("aria-pressed", String(state.locked));
  lock.textContent = state.locked ? "Unlock room" : "Lock room";
  $("lock-label").hidden = !state.locked;
  const hand = $("btn-hand");
  hand.setAttribute("aria-pressed", String(state.hand));
  hand.textContent = state.hand ? "Lower hand" : "Raise hand";
}

// ---------------------------------------------------------------- participants and tiles

function addPerson({ id, name, self = false, moderator = false, muted = null, hand = false,
  hand_at: handAt = null }) {
  if (people.has(id)) {
    const existing = people.get(id);
    if (name) existing.name = name;
    return existing;
  }
  const tile = document.createElement("figure");
  tile.className = self ? "tile tile-self" : "tile";
  tile.dataset.participant = id;
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = self; // never play our own microphone back
  video.addEventListener("click", () => {
    if (!self && video.muted) {
      video.muted = false;
      video.play().catch(() => {});
    }
  });
  const caption = document.createElement("figcaption");
  // shown instead of the video while the camera is off (muted, held or absent)
  const avatar = document.createElement("div");
  avatar.className = "tile-avatar";
  avatar.setAttribute("aria-hidden", "true");
  avatar.textContent = initialsOf(name || id);
  tile.append(video, avatar, caption);
  $("grid").append(tile);
  const person = { id, name: name || id, self, moderator: Boolean(moderator),
    muted: { audio: Boolean(muted?.audio), video: Boolean(muted?.video) },
    hand: Boolean(hand), handAt: hand ? handAt : null, tile, video, caption, avatar };
  people.set(id, person);
  return person;
}

function initialsOf(name) {
  return String(name).split(/\s+/).filter(Boolean).slice(0, 2)
    .map((w) => w[0].toUpperCase()).join("") || "?";
}

/** Raised hands first, in the order they were raised; then everyone as they came. */
function listOrder() {
  const all = [...people.values()];
  const raised = all.filter((p) => p.hand).sort((a, b) => (a.handAt ?? 0) - (b.handAt ?? 0));
  return [...raised, ...all.filter((p) => !p.hand)];
}

function moderatorButton(text, label, onClick, disabled = false) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "person-action";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.disabled = disabled;
  b.addEventListener("click", onClick);
  return b;
}

function removePerson(id) {
  const person = people.get(id);
  if (!person || person.self) return;
  for (const [name, entry] of [...pcs]) {
    if (entry.role === "subscribe" && entry.from === id) closePc(name);
  }
  person.tile.remove();
  people.delete(id);
  renderPeople();
}

function isPresenting(id) {
  if (id === state.id) return state.screenSharing;
  for (const entry of pcs.values()) {
    if (entry.role === "subscribe" && entry.kind === "screen" && entry.from === id) return true;
  }
  return false;
}

function renderPeople() {
  const list = $("people");
  list.replaceChildren();
  state.participants = [];
  const speaker = people.has(state.speaker) ? state.speaker : null;
  for (const person of listOrder()) {
    const presenting = isPresenting(person.id);
    const speaking = person.id === speaker;
    state.participants.push({ id: person.id, name: person.name, self: person.self,
      moderator: person.moderator, muted: { ...person.muted }, hand: person.hand,
      speaking, presenting });
    const li = document.createElement("li");
    li.dataset.participant = person.id;
    li.dataset.microphone = person.muted.audio ? "off" : "on";
    li.dataset.camera = person.muted.video ? "off" : "on";
    li.dataset.hand = person.hand ? "raised" : "";
    li.dataset.speaking = String(speaking);
    const name = document.createElement("span");
    name.className = "person-name";
    name.textContent = person.self ? `${person.name} (you)` : person.name;
    li.append(name);
    const badges = [];
    if (person.hand) badges.push(["hand", "hand raised"]);
    if (speaking) badges.push(["speaking", "speaking"]);
    badges.push(person.muted.audio ? ["muted", "microphone off"] : ["on", "microphone on"]);
    badges.push(person.muted.video ? ["no-video", "camera off"] : ["on", "camera on"]);
    if (presenting) badges.push(["presenting", "presenting"]);
    if (person.moderator) badges.push(["moderator", "moderator"]);
    for (const [cls, text] of badges) {
      const b = document.createElement("span");
      b.className = `badge badge-${cls}`;
      b.textContent = text;
      li.append(b);
    }
    if (state.moderator && !person.self) {
      const actions = document.createElement("span");
      actions.className = "person-actions";
      actions.append(
        moderatorButton("Mute", `Mute microphone of ${person.name}`,
          () => muteParticipant(person.id, "audio"), person.muted.audio),
        moderatorButton("Stop video", `Stop camera of ${person.name}`,
          () => muteParticipant(person.id, "video"), person.muted.video),
        moderatorButton("Remove", `Remove ${person.name}`, () => removeParticipant(person.id)),
      );
      li.append(actions);
    }
    list.append(li);
    person.caption.textContent = person.self ? `${person.name} (you)` : person.name;
    person.tile.classList.toggle("tile-muted-audio", person.muted.audio);
    person.tile.classList.toggle("tile-muted-video", person.muted.video);
    person.tile.classList.toggle("tile-speaker", speaking);
    person.tile.classList.toggle("tile-hand", person.hand);
    person.caption.dataset.muted = person.muted.audio ? "microphone off" : "";
    person.caption.dataset.hand = person.hand ? "hand raised" : "";
  }
  $("people-count").textContent = `(${people.size})`;
  $("grid").classList.toggle("grid-has-speaker", speaker !== null && people.size > 1);
}

// ---------------------------------------------------------------- stage (screen share)

function showOnStage(key, stream, label, local = false) {
  const stage = $("stage");
  let item = stage.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (!item) {
    item = document.createElement("figure");
    item.className = "stage-item";
    item.dataset.key = key;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // screen shares carry no audio
    const caption = document.createElement("figcaption");
    item.append(video, caption);
    stage.append(item);
  }
  const video = item.querySelector("video");
  if (video.srcObject !== stream) video.srcObject = stream;
  item.classList.toggle("stage-local", local);
  item.querySelector("figcaption").textContent = label;
  stage.hidden = false;
  playVideo(video);
}

function removeFromStage(key) {
  const stage = $("stage");
  const item = stage.querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (item) {
    item.querySelector("video").srcObject = null;
    item.remove();
  }
  stage.hidden = stage.children.length === 0;
}

// ---------------------------------------------------------------- chat

function addChat(msg) {
  const entry = { from: msg.from, name: msg.name, text: msg.text, ts: msg.ts };
  state.chat.push(entry);
  const li = document.createElement("li");
  if (msg.from === state.id) li.className = "chat-own";
  const who = document.createElement("span");
  who.className = "chat-name";
  who.textContent = msg.name || msg.from;
  const when = document.createElement("time");
  const date = Number.isFinite(msg.ts) ? new Date(msg.ts * 1000) : new Date();
  when.dateTime = date.toISOString();
  when.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const text = document.createElement("p");
  text.className = "chat-text";
  text.textContent = msg.text;
  li.append(who, when, text);
  const log = $("chat-log");
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

function sendChat(text) {
  const trimmed = text.trim();
  if (!trimmed) return false;
  return send({ type: "chat", text: trimmed });
}

// ---------------------------------------------------------------- documents

function formatBytes(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

function personName(id) {
  return people.get(id)?.name || id || "unknown";
}

function documentUrl(doc) {
  return doc.url || `/api/documents/${encodeURIComponent(doc.id)}`;
}

function addDocument(doc) {
  if (!doc || !doc.id || state.documents.some((d) => d.id === doc.id)) return;
  state.documents.push(doc);
  const li = document.createElement("li");
  li.dataset.document = doc.id;
  const title = document.createElement("span");
  title.className = "doc-name";
  title.textContent = doc.name;
  const meta = document.createElement("span");
  meta.className = "doc-meta";
  meta.textContent = `${formatBytes(doc.size)} · from ${personName(doc.from)}`;
  const view = document.createElement("button");
  view.type = "button";
  view.className = "doc-view";
  view.textContent = "View";
  view.setAttribute("aria-label", `View ${doc.name}`);
  view.addEventListener("click", () => viewDocument(doc));
  const download = document.createElement("a");
  download.className = "button doc-download";
  download.href = documentUrl(doc);
  download.download = doc.name;
  download.textContent = "Download";
  download.setAttribute("aria-label", `Download ${doc.name}`);
  // the server answers only with this session's token: fetch, then save the bytes
  download.addEventListener("click", (ev) => {
    ev.preventDefault();
    saveDocument(doc);
  });
  li.append(title, meta, view, download);
  $("docs").append(li);
}

function removeDocument(id) {
  state.documents = state.documents.filter((d) => d.id !== id);
  const li = $("docs").querySelector(`li[data-document="${CSS.escape(String(id))}"]`);
  if (li) li.remove();
}

async function fetchDocument(doc) {
  const res = await fetch(documentUrl(doc), { headers: authHeaders() });
  if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
  return res.blob();
}

async function saveDocument(doc) {
  let blob;
  try {
    blob = await fetchDocument(doc);
  } catch (err) {
    setStatus(`Cannot download ${doc.name}: ${errorText(err)}`, "error");
    return;
  }
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = doc.name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function uploadDocument(file) {
  if (state.phase !== "joined") {
    setStatus(`Cannot share ${file.name}: not in a conference`, "error");
    return null;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  setStatus(`Uploading ${file.name}…`);
  let res;
  try {
    res = await fetch(`/api/rooms/${encodeURIComponent(state.room)}/documents`, {
      method: "POST",
      body: form,
      headers: authHeaders(),
    });
  } catch (err) {
    setStatus(`Upload of ${file.name} failed: ${errorText(err)}`, "error");
    return null;
  }
  if (!res.ok) {
    let reason = `${res.status} ${res.statusText}`;
    try {
      const text = (await res.text()).trim();
      let detail = text;
      try {
        const body = JSON.parse(text);
        detail = body.reason || body.error || text;
      } catch {
        // plain-text error body
      }
      if (detail) reason = `${res.status}: ${String(detail).slice(0, 200)}`;
    } catch {
      // no readable body: keep the status line
    }
    setStatus(`Upload of ${file.name} refused (${reason})`, "error");
    return null;
  }
  const doc = await res.json();
  addDocument(doc);
  setStatus(`Shared ${file.name}`, "ok");
  return doc;
}

let viewerUrl = null;
let viewerOpener = null; // the element focused before the viewer opened

async function viewDocument(doc) {
  closeViewer();
  const body = $("viewer-body");
  $("viewer-title").textContent = doc.name;
  const download = $("viewer-download");
  download.href = documentUrl(doc);
  download.download = doc.name;
  download.onclick = (ev) => {
    ev.preventDefault();
    saveDocument(doc);
  };
  viewerOpener = document.activeElement;
  $("viewer").hidden = false;
  $("viewer-close").focus();
  body.textContent = "Loading…";
  let blob;
  try {
    blob = await fetchDocument(doc);
  } catch (err) {
    body.textContent = "";
    setStatus(`Cannot open ${doc.name}: ${errorText(err)}`, "error");
    return;
  }
  const type = (doc.content_type || blob.type || "").split(";")[0].trim().toLowerCase();
  body.replaceChildren();
  if (type.startsWith("image/")) {
    viewerUrl = URL.createObjectURL(blob);
    const img = document.createElement("img");
    img.src = viewerUrl;
    img.alt = doc.name;
    body.append(img);
  } else if (type === "text/html") {
    // Uploaded HTML is untrusted: render it in a sandbox without scripts.
    const frame = document.createElement("iframe");
    frame.setAttribute("sandbox", "");
    frame.title = doc.name;
    frame.srcdoc = await blob.text();
    body.append(frame);
  } else if (type === "text/plain") {
    const pre = document.createElement("pre");
    pre.textContent = await blob.text();
    body.append(pre);
  } else {
    viewerUrl = URL.createObjectURL(new Blob([blob], { type: type || "application/pdf" }));
    const frame = document.createElement("iframe");
    frame.title = doc.name;
    frame.src = viewerUrl;
    body.append(frame);
  }
}

function closeViewer() {
  const wasOpen = !$("viewer").hidden;
  $("viewer").hidden = true;
  if (wasOpen && viewerOpener && document.contains(viewerOpener)) viewerOpener.focus();
  viewerOpener = null;
  $("viewer-body").replaceChildren();
  if (viewerUrl) URL.revokeObjectURL(viewerUrl);
  viewerUrl = null;
}

// ---------------------------------------------------------------- link protection indicator

// The `link` object is free-form (PROTOCOL.md). Fields understood: protected, mode,
// key_buffered_bytes, qber (fraction or %), sustainable_bps, alarm, level (override);
// and from a VPN gateway's budget (vpn/gateway.py): sustainable_payload_bps,
// seconds_of_key_at_consumption, drops_no_key.
const LOW_KEY_SECONDS = 60; // amber below this much key at the current consumption
const LOW_KEY_BYTES = 1024 * 1024; // amber below this buffer when no rate is known
const HIGH_QBER_PERCENT = 5; // amber above this QBER (BB84 aborts near 11 %)

function linkLevel(link) {
  if (!link) return "unknown";
  if (["green", "amber", "red"].includes(link.level)) return link.level;
  if (link.alarm || link.protected === false) return "red";
  if (link.key_buffered_bytes === 0 && link.drops_no_key > 0) return "red";
  const qber = qberPercent(link.qber);
  if (qber !== null && qber > HIGH_QBER_PERCENT) return "amber";
  const seconds = link.seconds_of_key_at_consumption;
  if (Number.isFinite(seconds)) {
    if (seconds < LOW_KEY_SECONDS) return "amber";
  } else if (Number.isFinite(link.key_buffered_bytes) && link.key_buffered_bytes < LOW_KEY_BYTES) {
    return "amber";
  }
  return "green";
}

/** QBER as a percentage; accepts a fraction (0.018) or a percentage (1.8). */
function qberPercent(qber) {
  if (!Number.isFinite(qber)) return null;
  return qber <= 1 ? qber * 100 : qber;
}

function formatBps(bps) {
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mb/s`;
  return `${(bps / 1e3).toFixed(0)} kb/s`;
}

function renderLink(link) {
  state.link = link;
  const level = linkLevel(link);
  state.linkLevel = level;
  const box = $("link-indicator");
  box.className = `link link-${level}`;
  box.dataset.level = level;
  let text;
  if (!link) {
    text = "Link protection: unknown";
  } else if (link.protected === false) {
    text = "NOT QKD-protected";
  } else {
    const parts = [`QKD-protected: ${link.mode || link.cipher || "OTP"}`];
    if (Number.isFinite(link.key_buffered_bytes)) {
      parts.push(`key buffer ${(link.key_buffered_bytes / 1e6).toFixed(1)} MB`);
    }
    const qber = qberPercent(link.qber);
    if (qber !== null) parts.push(`QBER ${qber.toFixed(1)} %`);
    const sustainable = link.sustainable_bps ?? link.sustainable_payload_bps;
    if (Number.isFinite(sustainable)) parts.push(`sustainable ${formatBps(sustainable)}`);
    const seconds = link.seconds_of_key_at_consumption;
    if (Number.isFinite(seconds)) parts.push(`${Math.round(seconds)} s of key left`);
    if (link.drops_no_key > 0) parts.push(`${link.drops_no_key} packets dropped for lack of key`);
    text = parts.join(" · ");
  }
  $("link-text").textContent = text;
  const alarm = $("link-alarm");
  alarm.hidden = !(link && link.alarm);
  alarm.textContent = link && link.alarm ? String(link.alarm) : "";
}

// ---------------------------------------------------------------- bitrate label

function capText(bps) {
  return bps === 0 ? "paused (key budget)" : formatBps(bps);
}

function renderBitrates() {
  const b = state.bitrates;
  $("bitrate-label").textContent = b
    ? `caps: camera ${capText(b.camera)}, screen ${capText(b.screen)}, audio ${formatBps(b.audio)}`
    : "";
}

// ---------------------------------------------------------------- wiring

function init() {
  const params = new URLSearchParams(location.search);
  if (params.get("room")) $("join-room").value = params.get("room");
  if (params.get("name")) $("join-name").value = params.get("name");
  if (params.get("camera") === "0") $("join-camera").checked = false;
  if (params.get("microphone") === "0") $("join-microphone").checked = false;
  secret = secretFrom(location.hash);
  if (secret) $("join-invite").value = location.href;

  $("join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const room = $("join-room").value.trim();
    const name = $("join-name").value.trim();
    secret = secretFrom($("join-invite").value);
    if (!secret) {
      setStatus("Paste the invite link you were given", "error");
      return;
    }
    if (!room || !name) {
      setStatus("Enter a room and your name", "error");
      return;
    }
    join(room, name, { camera: $("join-camera").checked,
      microphone: $("join-microphone").checked });
  });
  $("btn-audio").addEventListener("click", () => setMuted("audio", !state.muted.audio));
  $("btn-video").addEventListener("click", () => setMuted("video", !state.muted.video));
  $("btn-screen").addEventListener("click", () => {
    if (state.screenSharing) stopScreenShare();
    else startScreenShare();
  });
  $("btn-leave").addEventListener("click", leave);
  $("btn-lock").addEventListener("click", () => setLocked(!state.locked));
  $("btn-hand").addEventListener("click", () => setHand(!state.hand));
  $("chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (sendChat($("chat-input").value)) $("chat-input").value = "";
  });
  $("doc-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("doc-file");
    const file = input.files && input.files[0];
    if (!file) {
      setStatus("Choose a file to share first", "error");
      return;
    }
    if (await uploadDocument(file)) input.value = "";
  });
  $("viewer-close").addEventListener("click", closeViewer);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("viewer").hidden) closeViewer();
  });
  window.addEventListener("pagehide", () => {
    if (state.phase === "joined" || state.phase === "rejoining") leave();
  });

  window.qkdmeet = {
    state,
    stats,
    join,
    leave,
    sendChat,
    uploadDocument,
    startScreenShare,
    stopScreenShare,
    setMuted,
    setHand,
    muteParticipant,
    removeParticipant,
    setLocked,
  };

  if (params.get("autojoin") === "1" && params.get("room") && params.get("name")) {
    join(params.get("room").trim(), params.get("name").trim(), {
      camera: params.get("camera") !== "0",
      microphone: params.get("microphone") !== "0",
    });
  }
}

init();
