// Timestamps: the server writes relative text and an absolute UTC title; show the title in the
// viewer's own time zone, also for rows that htmx swaps in later. A live page's feed sends a row
// again only when what it shows changes (web/live.py), so the relative text ("4 s ago", "2 hours
// ago", "in 3 hours") is counted on here, every second, in the server's words.
(function () {
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.title = when.toLocaleString(undefined, { timeZoneName: "short" });
    });
  }

  var UNITS = [
    [365 * 86400, "year"], [30 * 86400, "month"], [7 * 86400, "week"],
    [86400, "day"], [3600, "hour"], [60, "minute"]
  ];

  function plural(count, name) {
    return count + " " + name + (count === 1 ? "" : "s");
  }

  // Django's timesince: the largest unit, and the next one when it is not zero.
  function since(seconds, depth) {
    for (var i = 0; i < UNITS.length; i++) {
      var count = Math.floor(seconds / UNITS[i][0]);
      if (count > 0) {
        var words = plural(count, UNITS[i][1]);
        var rest = seconds - count * UNITS[i][0];
        if (depth > 1 && i + 1 < UNITS.length) {
          var next = Math.floor(rest / UNITS[i + 1][0]);
          if (next > 0) words += ", " + plural(next, UNITS[i + 1][1]);
        }
        return words;
      }
    }
    return "0 minutes";
  }

  // The `ago` filter: "just now", "4 s ago", "3 min ago", "2 hours ago".
  function ago(seconds) {
    if (seconds < 1) return "just now";
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min ago";
    return since(seconds, 1) + " ago";
  }

  // The `moment` tag: "just now", "5 minutes ago", "in 3 hours, 2 minutes".
  function moment(seconds) {
    if (Math.abs(seconds) < 60) return seconds >= 0 ? "just now" : "in a moment";
    return seconds >= 0 ? since(seconds, 2) + " ago" : "in " + since(-seconds, 2);
  }

  // The `moment` tag's compact form (a list cell): "3 min ago", "in 5 h 20 min", "in 1 d 23 h".
  function compactSpan(seconds) {
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    minutes -= hours * 60;
    if (hours < 24) return minutes && hours < 10 ? hours + " h " + minutes + " min" : hours + " h";
    var days = Math.floor(hours / 24);
    hours -= days * 24;
    return hours && days < 10 ? days + " d " + hours + " h" : days + " d";
  }

  function compactMoment(seconds) {
    if (Math.abs(seconds) < 60) return seconds >= 0 ? "just now" : "in a moment";
    return seconds >= 0 ? compactSpan(seconds) + " ago" : "in " + compactSpan(-seconds);
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("time[data-ago], time[data-moment]").forEach(function (el) {
      var when = Date.parse(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      var seconds = Math.floor((now - when) / 1000);
      var text = el.hasAttribute("data-ago")
        ? ago(Math.max(0, seconds))
        : el.hasAttribute("data-compact") ? compactMoment(seconds) : moment(seconds);
      if (el.textContent !== text) el.textContent = text;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    window.setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSettle", function (event) { localize(event.target); });
  // A row the feed sends may have been rendered a little earlier for another viewer: count at once.
  document.addEventListener("htmx:load", tick);
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail && event.detail.target) localize(event.detail.target.parentNode || document);
  });
})();

// A live page's feed never puts back a row an action (a cancel) is answering: while the cancel is
// in flight, or when it was answered after the feed asked, the row the feed brings is older than
// the one the cancel brings (or will). The feed's cursor still holds the row as it was, so its
// next answer sends the row again if it differs. What the action's answer said in the row ("Cancel
// accepted; …") stays for NOTICE_MS through the rows the feed brings meanwhile.
(function () {
  var NOTICE_MS = 15000;
  var pending = {};  // row id: actions in flight
  var answeredAt = {};  // row id: when its last action was answered
  var notices = {};  // row id: the last action's notice, while it is kept
  var feedSentAt = 0;

  function keepNotice(id) {
    var row = document.getElementById(id);
    var notice = row && row.querySelector(".row-notice");
    if (notice && notice.textContent) notices[id] = { text: notice.textContent, until: performance.now() + NOTICE_MS };
  }

  document.addEventListener("htmx:load", function (event) {
    var row = event.target;
    if (!row || !row.matches || !row.matches("tr.batch-row")) return;
    var kept = notices[row.id];
    if (!kept || kept.until < performance.now()) { delete notices[row.id]; return; }
    if (row.querySelector(".row-notice")) return;
    var notice = document.createElement("div");
    notice.className = "row-notice";
    notice.setAttribute("role", "status");
    notice.textContent = kept.text;
    var cells = row.querySelectorAll("td");
    (cells[2] || cells[cells.length - 1] || row).appendChild(notice);
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt && elt.id === "live-feed") {
      feedSentAt = performance.now();
      return;
    }
    var verb = (event.detail.requestConfig && event.detail.requestConfig.verb) || "get";
    var row = elt && elt.closest ? elt.closest("tr.batch-row") : null;
    if (!row || verb.toLowerCase() === "get") return;
    var id = row.id;
    pending[id] = (pending[id] || 0) + 1;
    delete notices[id];
    event.detail.xhr.addEventListener("loadend", function () {
      pending[id] -= 1;
      answeredAt[id] = performance.now();
      keepNotice(id);
    });
  });

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.matches || !target.matches("tr.batch-row")) return;
    if (pending[target.id] > 0 || (answeredAt[target.id] || -1) >= feedSentAt) event.detail.shouldSwap = false;
  });
})();

// Failed htmx requests are never silent. htmx swaps nothing on a 4xx/5xx answer or a network
// error, so the row (and its Cancel button) stays as it was; this says why, inside the row for a
// row's own requests, else in the page's notice region. A not-signed-in request is answered 401
// with HX-Redirect, which htmx follows (the whole page goes to sign in) and this leaves alone.
//
// Each request is followed on its XMLHttpRequest, set up when htmx is about to send it: by the
// time the answer comes, a row's poll may have swapped in a new row (same id) and left the
// element that asked detached, and htmx's own error events on a detached element never reach
// the document.
(function () {
  var MAX_SERVER_TEXT = 500;
  // A failed action's message (a cancel's) outlives the row's next polls, which swap in a new row:
  // by row id, until that row's next action.
  var sticky = {};

  function serverText(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/plain") !== 0) return "";
    var text = (xhr.responseText || "").trim();
    return text.length > MAX_SERVER_TEXT ? text.slice(0, MAX_SERVER_TEXT) + "…" : text;
  }

  function answerMessage(xhr, action) {
    var status = xhr.status;
    var text = serverText(xhr);
    var retry = action ? "Try again." : "It will retry.";
    if (status === 401) return text || "You are not signed in any more. Reload the page to sign in.";
    if (status === 403) {
      return text || "The dashboard refused this (your session changed — signed in again in another tab?). Reload the page and try again.";
    }
    if (status === 429) return text || "Too many requests: wait a moment. " + retry;
    if (status >= 500) return "The dashboard failed to answer (HTTP " + status + "). " + retry;
    return text || "The dashboard could not do this (HTTP " + status + "). Reload the page and try again.";
  }

  function networkMessage(action) {
    return action
      ? "Could not reach the dashboard. Check your connection and try again."
      : "Could not reach the dashboard. Check your connection; the row will retry.";
  }

  function rowErrorBox(row) {
    var box = row.querySelector(".row-error");
    if (!box) {
      box = document.createElement("div");
      box.className = "row-error";
      box.setAttribute("role", "status");
      var cells = row.querySelectorAll("td");
      (cells[2] || cells[cells.length - 1] || row).appendChild(box);
    }
    return box;
  }

  function pageNotice() {
    return document.getElementById("page-notice");
  }

  function show(request, text) {
    var row = request.rowId && document.getElementById(request.rowId);
    if (row) {
      rowErrorBox(row).textContent = "⚠ " + text;
      if (request.action) sticky[request.rowId] = text;
      return;
    }
    var notice = pageNotice();
    if (!notice) return;
    notice.textContent = text;
    notice.dataset.sticky = request.action ? "true" : "";
  }

  function answered(request, xhr) {
    if (xhr.getResponseHeader("HX-Redirect")) return; // htmx moves the whole page
    if (xhr.status >= 400) {
      show(request, answerMessage(xhr, request.action));
      return;
    }
    // A poll that answers clears a poll's page notice (a row's goes with the row it swaps out).
    var notice = pageNotice();
    if (!request.action && notice && notice.textContent && notice.dataset.sticky !== "true") notice.textContent = "";
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var detail = event.detail;
    var xhr = detail.xhr;
    if (!xhr) return;
    var verb = (detail.requestConfig && detail.requestConfig.verb) || "get";
    var row = detail.elt && detail.elt.closest ? detail.elt.closest("tr.batch-row") : null;
    var request = { action: verb.toLowerCase() !== "get", rowId: row ? row.id : "" };
    if (request.action) {
      // A new action clears the last one's message.
      if (row) {
        delete sticky[row.id];
        var box = row.querySelector(".row-error");
        if (box) box.textContent = "";
      }
      var notice = pageNotice();
      if (notice) { notice.textContent = ""; notice.dataset.sticky = ""; }
    }
    xhr.addEventListener("load", function () { answered(request, xhr); });
    xhr.addEventListener("error", function () { show(request, networkMessage(request.action)); });
    xhr.addEventListener("timeout", function () { show(request, networkMessage(request.action)); });
  });

  // A row swapped in by its poll keeps a failed action's message.
  document.addEventListener("htmx:load", function (event) {
    var row = event.target;
    if (row && row.matches && row.matches("tr.batch-row") && sticky[row.id]) {
      rowErrorBox(row).textContent = "⚠ " + sticky[row.id];
    }
  });
})();
