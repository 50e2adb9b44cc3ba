// The touch UI's only script: keypads, the escrow total while notes go in, the polls
// that bring the home screen up to date, and the idle timer. Every action is a plain
// form POST; without this script the inputs still take a keyboard.
"use strict";

(function () {
  const body = document.body;

  // -- keypads: type into the input the customer touched last (or the keypad's own) --
  let focused = null;
  document.querySelectorAll("input[data-keypad-target]").forEach((input) => {
    input.addEventListener("focus", () => { focused = input; });
  });
  document.querySelectorAll("[data-keypad-for]").forEach((pad) => {
    pad.addEventListener("click", (event) => {
      const key = event.target.closest("[data-key]");
      if (!key) return;
      const input = focused || document.getElementById(pad.dataset.keypadFor);
      if (!input) return;
      const value = key.dataset.key;
      if (value === "back") input.value = input.value.slice(0, -1);
      else if (value === "clear") input.value = "";
      else if (!input.maxLength || input.maxLength < 0 || input.value.length < input.maxLength) input.value += value;
      input.dispatchEvent(new Event("input", { bubbles: true }));
    });
  });

  // -- the escrow total, polled while the cash screen is up --
  const escrow = document.querySelector("[data-escrow-poll]");
  if (escrow) {
    const total = escrow.querySelector("[data-testid=escrow-total]");
    const list = escrow.querySelector("[data-testid=escrow-notes]");
    const pay = document.querySelector("[data-needs-notes]");
    const poll = async () => {
      try {
        const answer = await fetch("/pay/cash/escrow", { cache: "no-store" });
        const state = await answer.json();
        if (!state.open) { window.location.assign("/"); return; }
        if (total.textContent === state.total) return schedule();
        total.textContent = state.total;
        list.replaceChildren(...state.notes.map((note) => {
          const item = document.createElement("li");
          item.textContent = "¥" + note.value + " × " + note.count;
          return item;
        }));
        if (pay) pay.disabled = state.total_fen <= 0;
      } catch (error) { /* the next poll tries again */ }
      schedule();
    };
    const schedule = () => window.setTimeout(poll, Number(escrow.dataset.escrowPoll));
    schedule();
  }

  // -- home and out of service: reload when the functions on offer change --
  const sig = document.querySelector("[data-state-sig]");
  if (sig) {
    const check = async () => {
      try {
        const answer = await fetch("/state", { cache: "no-store" });
        const state = await answer.json();
        if (state.sig !== sig.dataset.stateSig) { window.location.reload(); return; }
      } catch (error) { /* the agent may be restarting */ }
      window.setTimeout(check, 3000);
    };
    window.setTimeout(check, 3000);
  }

  // -- the idle timer: no touch for idle-ms ends the customer's session --
  const idleMs = Number(body.dataset.idleMs || 0);
  if (idleMs > 0) {
    const HEARTBEAT_MS = 5000;
    let last = Date.now();
    let lastBeat = last;
    const touched = () => {
      last = Date.now();
      // The server runs a backstop timer; keypad touches stay in the page, so tell it.
      if (last - lastBeat >= HEARTBEAT_MS) {
        lastBeat = last;
        fetch("/activity", { method: "POST" }).catch(() => {});
      }
    };
    ["pointerdown", "keydown", "input"].forEach((name) => document.addEventListener(name, touched, true));
    // Notes going in count as activity too: the escrow poll reports them to the server,
    // and a changed total here resets the page's timer.
    if (escrow) {
      const total = escrow.querySelector("[data-testid=escrow-total]");
      new MutationObserver(() => { last = Date.now(); }).observe(total, { childList: true, characterData: true, subtree: true });
    }
    let ended = false;
    window.setInterval(() => {
      if (ended || Date.now() - last < idleMs) return;
      ended = true;
      document.getElementById("timeout-form").submit();
    }, 500);
  }
})();
