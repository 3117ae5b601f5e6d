// wsd-client.js: a small WebSocket client for wsd that reconnects with
// backoff and resumes every topic from the last position it saw, so that a
// dropped connection loses nothing that the topic's history still holds.
// No dependencies; served by wsd at /wsd-client.js; copy it freely.
//
//   <script src="/wsd-client.js"></script>
//   var client = new WsdClient({
//     url: function () { return "ws://" + location.host + "/?topics=news"; },
//     topics: ["news"],                          // the topics whose positions it keeps
//     positions: {news: {offset: 41, epoch: "k3x9e"}}, // optional: where to resume from at once
//     onMessage: function (data, info) { ... },  // info: {topic, offset, epoch, recovered, binary}
//     onReply: function (msg) { ... },           // {"op":...} messages: acks, errors, events
//     onLost: function (topic, position) { ... },// history no longer reaches back: reload your state
//     onStatus: function (state, detail) { ... } // "connecting", "open", "waiting" (retry in detail ms), "closed"
//   });
//   client.send(JSON.stringify({op: "publish", topic: "news", data: "hi"}));
//   client.close();
//
// It asks for ?format=json: every publication comes as
// {"topic","offset","epoch","data"} (or "data_base64"), and onMessage gets
// the data (a string, or a Uint8Array for data_base64) with its position.
// On each reconnection it adds ?since=TOPIC:OFFSET:EPOCH for every topic it
// has a position of; wsd answers {"op":"subscribed","recovered":true,...}
// and replays what was missed (onMessage with info.recovered true), or
// "recovered":false (onLost) and goes on live. A message at or below the
// last offset of its topic is dropped: each arrives once.
//
// Backoff: 0.5 s, doubling up to 15 s, with jitter; reset once connected.
(function (root) {
  "use strict";

  function WsdClient(opts) {
    if (!(this instanceof WsdClient)) return new WsdClient(opts);
    this.opts = opts || {};
    this.pos = Object.create(null);     // topic: {offset, epoch}
    var seed = this.opts.positions || {}; // positions kept from an earlier page, say
    for (var t in seed) {
      if (seed[t] && typeof seed[t].offset === "number" && typeof seed[t].epoch === "string") this.pos[t] = { offset: seed[t].offset, epoch: seed[t].epoch };
    }
    this.replayTo = Object.create(null); // topic: offset up to which messages are replays
    this.ws = null;
    this.retries = 0;
    this.timer = 0;
    this.closed = false;
    this.paused = false;
    this.connect();
  }

  // positions returns a copy of the last position of each topic.
  WsdClient.prototype.positions = function () {
    var out = {};
    for (var t in this.pos) out[t] = { offset: this.pos[t].offset, epoch: this.pos[t].epoch };
    return out;
  };

  WsdClient.prototype.status = function (state, detail) {
    if (this.opts.onStatus) this.opts.onStatus(state, detail);
  };

  WsdClient.prototype.socketURL = function () {
    var base = typeof this.opts.url === "function" ? this.opts.url() : this.opts.url;
    var q = ["format=json"];
    var topics = this.opts.topics || [];
    for (var i = 0; i < topics.length; i++) {
      var p = this.pos[topics[i]];
      if (p) q.push("since=" + encodeURIComponent(topics[i] + ":" + p.offset + ":" + p.epoch));
    }
    return base + (base.indexOf("?") < 0 ? "?" : "&") + q.join("&");
  };

  WsdClient.prototype.connect = function () {
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.closed || this.paused) return;
    var self = this, ws;
    this.status("connecting");
    try {
      ws = new WebSocket(this.socketURL());
    } catch (e) {
      this.retry();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = function () {
      if (self.ws !== ws) return;
      self.retries = 0;
      self.status("open");
      if (self.opts.onOpen) self.opts.onOpen(ws);
    };
    ws.onmessage = function (e) { if (self.ws === ws) self.frame(e.data); };
    ws.onclose = function (e) {
      if (self.ws !== ws) return;
      self.ws = null;
      if (self.opts.onClose && self.opts.onClose(e) === false) { // the application says: do not retry
        self.closed = true;
        self.status("closed", e.code);
        return;
      }
      self.retry();
    };
    ws.onerror = function () { /* onclose follows */ };
  };

  WsdClient.prototype.retry = function () {
    if (this.closed || this.paused) return;
    var delay = Math.min(15000, 500 * Math.pow(2, this.retries)) * (0.75 + Math.random() * 0.5);
    this.retries = Math.min(this.retries + 1, 10);
    this.status("waiting", delay);
    var self = this;
    this.timer = setTimeout(function () { self.connect(); }, delay);
  };

  WsdClient.prototype.frame = function (raw) {
    if (typeof raw !== "string") return; // ?format=json: every message is JSON text
    var m;
    try { m = JSON.parse(raw); } catch (e) { return; }
    if (!m || typeof m !== "object") return;
    if (typeof m.op === "string" || typeof m.topic !== "string") {
      this.reply(m); // acks, errors and events (anything without a topic)
      return;
    }
    var info = { topic: m.topic, offset: m.offset, epoch: m.epoch, recovered: false, binary: false };
    if (typeof m.offset === "number" && typeof m.epoch === "string") {
      var p = this.pos[m.topic];
      if (p && p.epoch === m.epoch && m.offset <= p.offset) return; // seen already
      this.pos[m.topic] = { offset: m.offset, epoch: m.epoch };
      var r = this.replayTo[m.topic];
      if (r !== undefined) {
        if (m.offset <= r) info.recovered = true;
        if (m.offset >= r) delete this.replayTo[m.topic];
      }
    }
    var data = m.data;
    if (typeof m.data_base64 === "string") {
      var s = atob(m.data_base64), b = new Uint8Array(s.length);
      for (var i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
      data = b;
      info.binary = true;
    }
    if (this.opts.onMessage) this.opts.onMessage(data, info);
  };

  WsdClient.prototype.reply = function (m) {
    if (m.op === "subscribed" && typeof m.topic === "string" && typeof m.offset === "number") {
      var had = this.pos[m.topic];
      if (m.recovered === true) {
        if (had && m.offset > had.offset) this.replayTo[m.topic] = m.offset;
      } else {
        if (m.recovered === false && this.opts.onLost) this.opts.onLost(m.topic, { offset: m.offset, epoch: m.epoch });
        this.pos[m.topic] = { offset: m.offset, epoch: m.epoch }; // go on from here
      }
      if (!had) this.pos[m.topic] = { offset: m.offset, epoch: m.epoch };
    }
    if (this.opts.onReply) this.opts.onReply(m);
  };

  // send sends data if the socket is open, and reports whether it did.
  WsdClient.prototype.send = function (data) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(data);
    return true;
  };

  // drop closes the socket as a network failure would: the client
  // reconnects after its backoff and resumes. With hold, it stays away
  // until reconnect() (tests use it to publish while it is away).
  WsdClient.prototype.drop = function (hold) {
    this.paused = !!hold;
    var ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (e) { /* already closed */ }
    }
    if (hold) this.status("waiting", -1);
    else this.retry();
  };

  // reconnect connects now (after drop, or to skip the backoff).
  WsdClient.prototype.reconnect = function () {
    this.paused = false;
    this.retries = 0;
    this.connect();
  };

  // close closes the socket for good.
  WsdClient.prototype.close = function () {
    this.closed = true;
    clearTimeout(this.timer);
    var ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, "bye"); } catch (e) { /* already closed */ }
    }
    this.status("closed");
  };

  if (typeof module === "object" && module.exports) module.exports = WsdClient;
  else root.WsdClient = WsdClient;
})(typeof self !== "undefined" ? self : this);
