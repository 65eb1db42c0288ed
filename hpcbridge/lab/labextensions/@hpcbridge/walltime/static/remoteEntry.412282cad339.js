/*
 * hpcbridge: the walltime left to this notebook server's batch job, in JupyterLab 4's
 * status bar, and a warning notification before it ends.
 *
 * A hand-written module-federation container, the interface JupyterLab's loader calls
 * (window._JUPYTERLAB[name].init(shareScope), .get("./extension") -> factory): no build
 * step. JupyterLab's status bar and Lumino's Widget come from the shared scope the
 * loader passes to init(); notifications go through JupyterLab's "apputils:notify"
 * command. The numbers come from the server extension hpcbridge.lab.walltime.
 */
(function () {
  "use strict";
  var NAME = "@hpcbridge/walltime";
  var ASK_EVERY = 60000; // ms between two questions to the server
  var shared = {};

  function fromShared(pkg) {
    var versions = shared[pkg] || {};
    var keys = Object.keys(versions);
    if (!keys.length) {
      return Promise.resolve(null);
    }
    return Promise.resolve(versions[keys[0]].get())
      .then(function (factory) { return factory(); })
      .catch(function () { return null; });
  }

  function clockText(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return h + ":" + pad(m) + ":" + pad(s % 60);
  }

  function minutesText(seconds) {
    var m = Math.max(1, Math.ceil(seconds / 60));
    return m === 1 ? "1 minute" : m + " minutes";
  }

  function activate(app, statusBar, widgets) {
    var settings = app.serviceManager.serverSettings;
    var url = settings.baseUrl + "hpcbridge/walltime";
    var state = { left: null, at: 0, warnBefore: 600, jobId: "", warned: false };
    var node = document.createElement("div");
    node.className = "hpcb-walltime";
    node.setAttribute("role", "timer");
    node.setAttribute("aria-live", "off");
    node.style.padding = "0 5px";
    node.style.display = "none";
    if (statusBar && widgets) {
      var item = new widgets.Widget({ node: node });
      item.id = "hpcbridge-walltime";
      statusBar.registerStatusItem(NAME + ":status", { item: item, align: "left", rank: 1000 });
    }

    function secondsLeft() {
      return state.left - (Date.now() - state.at) / 1000;
    }

    function warn(left) {
      state.warned = true;
      app.commands.execute("apputils:notify", {
        message: "This server's batch job " + state.jobId + " reaches its walltime in " +
          minutesText(left) + ": save your work, the server stops then.",
        type: "warning",
        options: { autoClose: false }
      }).catch(function (e) { console.warn("hpcbridge walltime:", e); });
    }

    function show() {
      if (state.left === null) {
        node.style.display = "none";
        return;
      }
      var left = secondsLeft();
      var near = left <= state.warnBefore;
      node.style.display = "";
      node.textContent = left > 0 ? "Walltime left: " + clockText(left) : "Walltime reached";
      node.title = "Batch job " + state.jobId + " of this server ends when its walltime " +
        "is used up.";
      node.style.fontWeight = near ? "bold" : "";
      node.classList.toggle("hpcb-walltime-near", near);
      if (near && left > 0 && !state.warned) {
        warn(left);
      }
    }

    function ask() {
      var headers = {};
      if (settings.token) {
        headers.Authorization = "token " + settings.token;
      }
      return fetch(url, { credentials: "same-origin", headers: headers })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (answer) {
          if (answer && typeof answer.left === "number") {
            state.left = answer.left;
            state.at = Date.now();
            state.jobId = String(answer.job_id || "");
            state.warnBefore = Number(answer.warn_before) || 600;
          } else {
            state.left = null;
          }
          show();
        })
        .catch(function () { /* the server is away (stopping?): try again later */ });
    }

    ask();
    window.setInterval(ask, ASK_EVERY);
    window.setInterval(show, 1000);
  }

  function plugin(statusbar, widgets) {
    return {
      id: NAME + ":plugin",
      description: "The walltime left to this server's batch job, and a warning before it ends.",
      autoStart: true,
      optional: statusbar ? [statusbar.IStatusBar] : [],
      activate: function (app, statusBar) {
        activate(app, statusBar || null, widgets);
      }
    };
  }

  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = {
    init: function (scope) {
      shared = scope || {};
    },
    get: function (module) {
      if (module !== "./extension") {
        return Promise.reject(new Error(NAME + " has no module " + module));
      }
      return Promise.all([fromShared("@jupyterlab/statusbar"), fromShared("@lumino/widgets")])
        .then(function (found) {
          var extension = { __esModule: true, default: plugin(found[0], found[1]) };
          return function () { return extension; };
        });
    }
  };
})();
