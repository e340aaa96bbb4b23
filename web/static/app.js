// DupliGone review page: progressive enhancement only. Every action is a plain form or link
// that works without this script; this adds keyboard shortcuts, live progress, upload progress
// and the compare view's zoom. No inline script anywhere (the CSP forbids it).
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrf = () => ($('meta[name="csrf-token"]') || {}).content || "";
  const page = document.body.dataset.page;

  function typing(ev) {
    const t = ev.target;
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
  }

  // ---- help dialog
  const help = $("#help");
  function openHelp() { if (help && !help.open) help.showModal(); }
  $$("[data-help]").forEach((b) => b.addEventListener("click", openHelp));

  // ---- session page: pick a photo, keep / delete / split it, step through groups
  const cards = $$(".photo[data-photo]");
  let picked = null;
  function pick(card, focus) {
    if (!card) return;
    cards.forEach((c) => c.classList.remove("selected"));
    card.classList.add("selected");
    picked = card;
    if (focus) card.focus({ preventScroll: false });
  }
  if (cards.length) {
    const fromHash = location.hash && document.getElementById(location.hash.slice(1));
    pick(cards.includes(fromHash) ? fromHash : (cards.find((c) => c.classList.contains("is-delete")) || cards[0]), !!fromHash);
    cards.forEach((c) => c.addEventListener("focusin", () => pick(c, false)));
  }
  function act(name) {
    if (!picked) return;
    const b = $('button[data-act="' + name + '"]', picked);
    if (b && !b.disabled) b.click();
  }
  function follow(sel) {
    const a = $(sel);
    if (a && a.href) location.href = a.href;
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev)) return;
    if (help && help.open) return;
    const k = ev.key;
    if (k === "?") { ev.preventDefault(); openHelp(); return; }
    if (page === "session") {
      if (k === "ArrowLeft") follow("[data-key-prev]");
      else if (k === "ArrowRight") follow("[data-key-next]");
      else if (k === "ArrowDown" || k === "ArrowUp") {
        if (!cards.length) return;
        ev.preventDefault();
        const i = Math.max(0, cards.indexOf(picked));
        pick(cards[(i + (k === "ArrowDown" ? 1 : cards.length - 1)) % cards.length], true);
      } else if (/^[1-9]$/.test(k)) pick(cards[Number(k) - 1], true);
      else if (k === "k") act("keep");
      else if (k === "d") act("delete");
      else if (k === "n") act("split");
      else if (k === "v") {
        const a = $("[data-key-compare]");
        if (a) location.href = a.href.split("&a=")[0] + (picked ? "&a=" + picked.dataset.photo : "");
      } else if (k === "c") follow("[data-key-confirm]");
      else return;
    } else if (page === "compare") {
      if (k === "z") { const z = $("[data-zoom]"); if (z) z.click(); }
      else if (k === "Escape" || k === "Backspace") follow("[data-key-back]");
      else return;
    } else {
      return;
    }
  });

  // ---- dry run: the confirm button counts the ticked groups nobody reviewed
  const confirmBtn = $("[data-confirm]");
  if (confirmBtn) {
    const label = $("[data-confirm-label]", confirmBtn);
    const ticks = $$("[data-include]");
    const update = () => {
      const n = Number(confirmBtn.dataset.baseFiles) +
        ticks.filter((t) => t.checked).reduce((a, t) => a + Number(t.dataset.files), 0);
      label.textContent = "Move " + n + (n === 1 ? " file" : " files") + " to trash";
      confirmBtn.disabled = n === 0;
    };
    ticks.forEach((t) => t.addEventListener("change", update));
    update();
  }

  // ---- compare: zoom to 100%, both panes scroll together
  const zoom = $("[data-zoom]");
  if (zoom) {
    const panes = $$(".pane");
    zoom.addEventListener("click", () => {
      const on = zoom.getAttribute("aria-pressed") !== "true";
      zoom.setAttribute("aria-pressed", String(on));
      zoom.textContent = on ? "Fit to the window" : "Zoom to 100%";
      panes.forEach((p) => p.classList.toggle("actual", on));
    });
    let syncing = false;
    panes.forEach((p) => p.addEventListener("scroll", () => {
      if (syncing) return;
      syncing = true;
      panes.forEach((q) => { if (q !== p) { q.scrollTop = p.scrollTop; q.scrollLeft = p.scrollLeft; } });
      requestAnimationFrame(() => { syncing = false; });
    }));
  }

  // ---- live progress
  function progressText(s) {
    const done = s.done !== undefined ? s.done : s.photos - s.queued - s.errors;
    return done + " done, " + s.queued + " queued, " + s.errors + " failed";
  }
  const pollBox = $("[data-poll-session]");
  if (pollBox) {
    const token = pollBox.dataset.pollSession;
    const groupsShown = Number(pollBox.dataset.groups || 0);
    const tick = () => fetch("/api/sessions/" + encodeURIComponent(token), { credentials: "same-origin" })
      .then((r) => r.ok ? r.json() : Promise.reject(r.status))
      .then((s) => {
        // Finished, or (preliminary) groups changed: show them.
        if (s.state === "clustered" || s.state === "reviewed" || s.groups !== groupsShown) { location.reload(); return; }
        const w = s.wait || {};
        $('[data-field="progress"]', pollBox).textContent = w.received + (w.received === 1 ? " photo" : " photos") +
          " received · " + w.analysed + " analysed · " + w.to_analyse + " to analyse" +
          (s.errors ? " · " + s.errors + " could not be read" : "");
        const bar = $('[data-field="bar"]', pollBox);
        bar.max = Math.max(1, w.received); bar.value = w.analysed + s.errors;
        if (w.text) $('[data-field="state-text"]', pollBox).textContent = w.text;
        setTimeout(tick, 1000);
      })
      .catch(() => setTimeout(tick, 3000));
    setTimeout(tick, 800);
  }
  const table = $("[data-sessions]");
  if (table && page === "home") {
    const busy = () => $$("tr[data-token]", table).some((tr) => !/clustered|reviewed/.test(tr.dataset.state));
    const tick = () => fetch("/api/status", { credentials: "same-origin" })
      .then((r) => r.ok ? r.json() : Promise.reject(r.status))
      .then((st) => {
        const lib = $("[data-library]");
        ["photos", "queued", "errors"].forEach((f) => { $('[data-field="' + f + '"]', lib).textContent = st.library[f]; });
        let unknown = false;
        st.sessions.forEach((s) => {
          const tr = $('tr[data-token="' + CSS.escape(s.token) + '"]', table);
          if (!tr) { unknown = true; return; }
          tr.dataset.state = s.state;
          const set = (f, v) => { const el = $('[data-field="' + f + '"]', tr); if (el) el.textContent = v; };
          const stEl = $('[data-field="state"]', tr);
          stEl.className = "state state-" + s.state;
          set("state", s.state); set("progress", progressText(s)); set("groups", s.groups);
          set("to_review", s.to_review); set("to_delete", s.to_delete);
          const bar = $("progress", tr); bar.max = Math.max(1, s.photos); bar.value = s.done + s.errors;
        });
        if (unknown) location.reload();
        else if (busy()) setTimeout(tick, 2000);
      })
      .catch(() => setTimeout(tick, 5000));
    if (busy()) setTimeout(tick, 1500);
  }

  // ---- upload: drag and drop, one request per file, a progress bar each
  const form = $("#upload-form");
  if (form) {
    const input = $("#files");
    const zone = $("[data-dropzone]");
    const list = $("[data-upload-list]");
    const status = $("[data-upload-status]");
    const picked = $("#picked");
    let files = [];
    const setFiles = (fl) => {
      files = Array.from(fl);
      picked.textContent = files.length ? files.length + " photo" + (files.length > 1 ? "s" : "") + " picked" : "";
    };
    input.addEventListener("change", () => setFiles(input.files));
    ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.remove("over"); }));
    zone.addEventListener("drop", (ev) => { setFiles(ev.dataTransfer.files); start(); });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); if (!files.length) setFiles(input.files); start(); });

    function send(file, token, row) {
      return new Promise((resolve) => {
        const xhr = new XMLHttpRequest();
        const fd = new FormData();
        fd.append("files", file, file.name);
        xhr.open("POST", "/api/upload" + (token ? "?session=" + encodeURIComponent(token) : ""));
        xhr.setRequestHeader("x-csrftoken", csrf());
        xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) row.bar.value = e.loaded / e.total; });
        xhr.addEventListener("load", () => {
          let body = {};
          try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
          if (xhr.status >= 200 && xhr.status < 300) {
            row.li.className = "done"; row.bar.value = 1; row.msg.textContent = "uploaded";
            resolve(body.token);
          } else {
            row.li.className = "failed"; row.msg.textContent = "refused: " + (body.detail || ("error " + xhr.status));
            resolve(null);
          }
        });
        xhr.addEventListener("error", () => { row.li.className = "failed"; row.msg.textContent = "failed: the connection broke"; resolve(null); });
        xhr.send(fd);
      });
    }
    async function start() {
      if (!files.length) { status.textContent = "Pick some photos first."; input.focus(); return; }
      $("[data-upload-progress]").hidden = false;
      $("[data-upload-submit]").disabled = true;
      list.textContent = "";
      const rows = files.map((f) => {
        const li = document.createElement("li");
        const name = document.createElement("span"); name.textContent = f.name;
        const bar = document.createElement("progress"); bar.max = 1; bar.value = 0;
        bar.setAttribute("aria-label", "Upload of " + f.name);
        const msg = document.createElement("span"); msg.className = "msg"; msg.textContent = "waiting";
        li.append(name, " ", bar, msg); list.append(li);
        return { li, bar, msg };
      });
      status.textContent = "Uploading " + files.length + " photos…";
      let token = null; let ok = 0; let next = 0;
      // The first upload makes the session; the rest join it, two at a time.
      while (next < files.length && !token) {
        token = await send(files[next], null, rows[next]); if (token) ok++; next++;
      }
      const worker = async () => {
        while (next < files.length) { const i = next++; if (await send(files[i], token, rows[i])) ok++; }
      };
      if (token) await Promise.all([worker(), worker()]);
      const failed = files.length - ok;
      if (!token) { status.textContent = "Nothing was uploaded: every file was refused."; $("[data-upload-submit]").disabled = false; return; }
      status.textContent = ok + " uploaded" + (failed ? ", " + failed + " refused" : "") + ". Opening the review…";
      const r = await fetch("/api/upload/" + encodeURIComponent(token) + "/done",
        { method: "POST", headers: { "x-csrftoken": csrf() }, credentials: "same-origin" });
      const body = await r.json();
      setTimeout(() => { location.href = body.review_url || ("/s/" + token); }, failed ? 2500 : 300);
    }
  }
})();
