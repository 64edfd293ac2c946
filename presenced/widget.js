/*
 * presenced widget: live XMPP presence on a web page, without writing
 * JavaScript.  Include this script from a presenced server and mark up
 * elements:
 *
 *   <span data-presence-jid="alice@example.com" data-presence-show="badge"></span>
 *
 * data-presence-show: icon, label, status or badge (default: label).
 * data-presence-req-jid (and data-presence-req-exp, data-presence-req-sig
 * for signed requesters): who asks, in subscribers-only mode.
 *
 * Each element gets data-presence-state and the class presence-STATE
 * (available, chat, away, xa, dnd, offline, forbidden).  One event stream
 * follows every JID on the page (one per 100 JIDs and requester); where
 * streams cannot be used, statuses are polled every 60 seconds.  Text
 * from users is only ever written as text.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var base = script ? script.src.replace(/widget\.js(\?.*)?$/, "") : "/plugins/presence/";
  var STATES = ["available", "chat", "away", "xa", "dnd", "offline", "forbidden"];
  var BATCH = 100;
  var POLL_MS = 60000;
  var FAILURES_BEFORE_POLLING = 3;

  function query(params) {
    return params.map(function (pair) {
      return encodeURIComponent(pair[0]) + "=" + encodeURIComponent(pair[1]);
    }).join("&");
  }

  function requesterParams(group) {
    var params = [];
    if (group.reqJid) { params.push(["req_jid", group.reqJid]); }
    if (group.reqExp) { params.push(["req_exp", group.reqExp]); }
    if (group.reqSig) { params.push(["req_sig", group.reqSig]); }
    return params;
  }

  function show(element, presence, group, version) {
    var state = STATES.indexOf(presence.state) >= 0 ? presence.state : "offline";
    var kind = element.getAttribute("data-presence-show") || "label";
    STATES.forEach(function (name) { element.classList.remove("presence-" + name); });
    element.classList.add("presence-" + state);
    element.setAttribute("data-presence-state", state);
    if (kind === "icon" || kind === "badge") {
      var image = element.querySelector("img.presence-picture");
      if (!image) {
        image = document.createElement("img");
        image.className = "presence-picture";
        element.textContent = "";
        element.appendChild(image);
      }
      var params = [["jid", element.getAttribute("data-presence-jid")],
                    ["type", kind === "icon" ? "image" : "svg"]].concat(requesterParams(group));
      var label = element.getAttribute("data-presence-label");
      if (kind === "badge" && label) { params.push(["label", label]); }
      params.push(["v", String(version)]);
      image.alt = presence.status ? presence.label + ": " + presence.status : presence.label;
      image.src = base + "status?" + query(params);
    } else if (kind === "status") {
      element.textContent = presence.status || presence.label;
    } else {
      element.textContent = presence.label;
    }
  }

  function Group(reqJid, reqExp, reqSig) {
    this.reqJid = reqJid;
    this.reqExp = reqExp;
    this.reqSig = reqSig;
    this.elements = {};
    this.version = 0;
    this.failures = 0;
    this.source = null;
    this.timer = null;
  }

  Group.prototype.jids = function () { return Object.keys(this.elements); };

  Group.prototype.deliver = function (presence) {
    var elements = this.elements[presence.jid];
    if (!elements) { return; }
    this.version += 1;
    var group = this;
    elements.forEach(function (element) { show(element, presence, group, group.version); });
  };

  Group.prototype.url = function (endpoint) {
    var params = this.jids().map(function (jid) { return ["jid", jid]; });
    return base + endpoint + "?" + query(params.concat(requesterParams(this)));
  };

  Group.prototype.stream = function () {
    var group = this;
    if (typeof EventSource === "undefined") { group.poll(); return; }
    var source = new EventSource(group.url("events"));
    group.source = source;
    source.addEventListener("presence", function (event) {
      group.failures = 0;
      try { group.deliver(JSON.parse(event.data)); } catch (e) { /* not ours */ }
    });
    source.onerror = function () {
      group.failures += 1;
      if (group.failures >= FAILURES_BEFORE_POLLING || source.readyState === EventSource.CLOSED) {
        source.close();
        group.source = null;
        group.poll();
      }
    };
  };

  Group.prototype.poll = function () {
    var group = this;
    if (group.timer !== null) { return; }
    function once() {
      fetch(group.url("statuses"), {credentials: "omit"}).then(function (answer) {
        return answer.ok ? answer.json() : {};
      }).then(function (all) {
        Object.keys(all).forEach(function (jid) { group.deliver(all[jid]); });
      }).catch(function () { /* try again at the next round */ });
    }
    once();
    group.timer = setInterval(once, POLL_MS);
  };

  function start() {
    var groups = {};
    var elements = document.querySelectorAll("[data-presence-jid]");
    Array.prototype.forEach.call(elements, function (element) {
      var jid = (element.getAttribute("data-presence-jid") || "").trim();
      if (!jid) { return; }
      var reqJid = element.getAttribute("data-presence-req-jid") || "";
      var reqExp = element.getAttribute("data-presence-req-exp") || "";
      var reqSig = element.getAttribute("data-presence-req-sig") || "";
      var key = [reqJid, reqExp, reqSig].join("\n");
      var chunks = groups[key] || (groups[key] = [new Group(reqJid, reqExp, reqSig)]);
      var group = chunks[chunks.length - 1];
      if (!group.elements[jid] && group.jids().length >= BATCH) {
        group = new Group(reqJid, reqExp, reqSig);
        chunks.push(group);
      }
      (group.elements[jid] = group.elements[jid] || []).push(element);
    });
    Object.keys(groups).forEach(function (key) {
      groups[key].forEach(function (group) { group.stream(); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
