// Agent33 dashboard: live run page (Server-Sent Events) and a self-refreshing runs list.
// Plain browser JavaScript, no library. Text from the server is set with textContent only.
"use strict";

(function () {
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const ALL_STATES = ["pending", "queued", "running", "retrying", "waiting", "succeeded",
    "failed", "skipped", "cancelled"];

  function pretty(value) {
    return value === null || value === undefined ? "" : JSON.stringify(value, null, 2);
  }

  function setStateClass(element, state) {
    ALL_STATES.forEach((s) => element.classList.remove("state-" + s));
    element.classList.add("state-" + state);
    element.dataset.state = state;
  }

  function showControls(section, runState) {
    section.querySelectorAll("[data-show-when]").forEach((form) => {
      form.hidden = !form.dataset.showWhen.split(" ").includes(runState);
    });
  }

  function applyStep(step) {
    const node = document.querySelector('#dag g.node[data-step="' + CSS.escape(step.step_id) + '"]');
    if (node) {
      setStateClass(node, step.state);
      const text = node.querySelector(".state-text");
      if (text) text.textContent = " · " + step.state;
      const title = node.querySelector("title");
      if (title) title.textContent = step.step_id + " (" + step.action + "): " + step.state;
    }
    const card = document.getElementById("step-" + step.step_id);
    if (!card) return;
    setStateClass(card, step.state);
    const fields = {
      state: step.state, attempt: String(step.attempt), worker: step.worker || "",
      inputs: pretty(step.inputs), output: pretty(step.output), error: pretty(step.error),
    };
    card.querySelectorAll("[data-field]").forEach((el) => {
      if (el.dataset.field in fields) el.textContent = fields[el.dataset.field];
    });
    const badge = card.querySelector(".badge");
    if (badge) setStateClass(badge, step.state);
    const approval = card.querySelector("form.approval");
    if (approval) approval.hidden = !step.awaiting_approval;
  }

  // Must match templates/dashboard/_event.html.
  function eventLine(e) {
    const li = document.createElement("li");
    li.textContent = e.at + " " + e.kind + (e.step_id ? " [" + e.step_id + "]" : "") +
      (e.to_state ? " → " + e.to_state : "") + (e.message ? ": " + e.message : "");
    return li;
  }

  function applyEvents(events) {
    const all = document.getElementById("events");
    if (all) all.replaceChildren(...events.map(eventLine));
    document.querySelectorAll("ul[data-step-log]").forEach((list) => {
      const mine = events.filter((e) => e.step_id === list.dataset.stepLog);
      list.replaceChildren(...mine.map(eventLine));
    });
  }

  function applyRun(section, run) {
    section.dataset.state = run.state;
    const badge = document.getElementById("run-state");
    badge.textContent = run.state;
    setStateClass(badge, run.state);
    document.getElementById("run-outputs").textContent = pretty(run.outputs);
    const errorBox = document.getElementById("run-error-box");
    document.getElementById("run-error").textContent = pretty(run.error);
    errorBox.hidden = !run.error;
    run.steps.forEach(applyStep);
    applyEvents(run.events || []);
    showControls(section, run.state);
  }

  function say(message, ok) {
    let box = document.getElementById("live-message");
    if (!box) {
      box = document.createElement("p");
      box.id = "live-message";
      box.setAttribute("role", "status");
      document.querySelector("main").prepend(box);
    }
    box.className = "flash " + (ok ? "ok" : "error");
    box.textContent = message;
  }

  // Approve/reject without leaving the page: the live view keeps following the run.
  function postInPlace(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new URLSearchParams(new FormData(form, event.submitter));
      form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        const response = await fetch(form.action, {
          method: "POST", body: data, credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        const answer = await response.json().catch(() => ({ message: response.statusText }));
        say(answer.message, response.ok);
        if (response.ok) form.hidden = true;
      } catch (error) {
        say(String(error), false);
      } finally {
        form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    });
  }

  function followRun(section) {
    section.querySelectorAll("form.approval").forEach(postInPlace);
    const status = document.getElementById("live-status");
    showControls(section, section.dataset.state);
    if (section.hasAttribute("data-terminal") || !window.EventSource) return;
    const source = new EventSource(section.dataset.live);
    source.addEventListener("open", () => { status.textContent = "live"; });
    source.addEventListener("run", (event) => applyRun(section, JSON.parse(event.data)));
    source.addEventListener("end", () => {
      source.close();
      status.textContent = "finished";
    });
    source.addEventListener("error", () => {
      if (!TERMINAL.has(section.dataset.state)) status.textContent = "reconnecting…";
    });
  }

  function refreshRuns(body) {
    window.setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(window.location.href, { credentials: "same-origin" });
        if (!response.ok || response.redirected) return;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("runs-body");
        if (fresh) body.replaceChildren(...fresh.childNodes);
      } catch (_) { /* the next tick tries again */ }
    }, 3000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const section = document.getElementById("run");
    if (section) followRun(section);
    const body = document.getElementById("runs-body");
    if (body) refreshRuns(body);
  });
})();
