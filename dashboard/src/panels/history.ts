// Every update per platform and runtime, newest first, with the actions the caller's role allows:
// roll back, promote to another channel, delete. Each asks for confirmation and is one API call.
import { api, can } from "../api";
import { h, errorBox } from "../dom";
import { registerPanel, type PanelContext, type RuntimeUpdates, type UpdateSummary } from "./registry";

function target(slug: string, rt: RuntimeUpdates): string {
  return `/api/updates/${encodeURIComponent(slug)}/${encodeURIComponent(rt.platform)}/${encodeURIComponent(rt.runtimeVersion)}`;
}

/** What the last action did, shown once by the next render (the page re-renders after a change). */
let flash = "";

async function act(ctx: PanelContext, status: HTMLElement, question: string, run: () => Promise<unknown>, done: string) {
  if (!window.confirm(question)) return;
  status.replaceChildren(h("span", { class: "loading" }, "Working…"));
  try {
    await run();
    flash = done;
    ctx.refresh();
  } catch (e) {
    status.replaceChildren(errorBox(`${(e as Error).message}`));
  }
}

function actions(ctx: PanelContext, rt: RuntimeUpdates, u: UpdateSummary, status: HTMLElement): HTMLElement | null {
  const buttons: HTMLElement[] = [];
  const base = target(ctx.slug, rt);
  if (can.publish(ctx.role) && u.current) {
    buttons.push(
      h("button", {
        type: "button",
        "data-testid": "rollback",
        onclick: () =>
          act(ctx, status, `Roll back ${rt.platform} ${rt.runtimeVersion} on ${u.channel}? Devices get what this channel served before.`,
            () => api("POST", `${base}/rollback`, { channel: u.channel, expectedCurrent: u.id }),
            "Rolled back."),
      }, "Roll back"),
    );
  }
  if (can.publish(ctx.role) && u.kind === "update") {
    buttons.push(
      h("button", {
        type: "button",
        "data-testid": "promote",
        onclick: () => {
          const to = window.prompt(`Promote ${u.id} to which channel?`, u.channel === "production" ? "staging" : "production");
          if (!to) return;
          void act(ctx, status, `Serve ${u.id} on ${to}?`, () => api("POST", `${base}/promote`, { updateId: u.id, toChannel: to }), `Promoted to ${to}.`);
        },
      }, "Promote…"),
    );
  }
  if (can.own(ctx.role)) {
    buttons.push(
      h("button", {
        type: "button",
        class: "danger",
        "data-testid": "delete",
        onclick: () =>
          act(ctx, status, `Delete update ${u.id}? If its channel serves it, what it served before is republished.`,
            () => api("DELETE", `${base}/${encodeURIComponent(u.id)}`), "Deleted."),
      }, "Delete"),
    );
  }
  return buttons.length ? h("div", { class: "actions" }, ...buttons) : null;
}

registerPanel({
  id: "history",
  title: "History",
  order: 20,
  render(ctx, el) {
    if (ctx.updates.length === 0) {
      el.append(h("p", { class: "muted" }, "No history yet."));
      return;
    }
    const status = h("div", { class: "action-status" });
    if (flash) status.append(h("span", { class: "ok", role: "status" }, flash));
    flash = "";
    el.append(status);
    for (const rt of ctx.updates) {
      const items = rt.updates.map((u) =>
        h(
          "li",
          { class: u.current ? "current" : "", "data-testid": "history-item" },
          h("div", { class: "line" },
            h("code", { class: "id", "data-testid": "update-id" }, u.id),
            h("span", { class: "badge" }, u.channel),
            u.current ? h("span", { class: "badge on" }, "current") : null,
            u.kind !== "update" ? h("span", { class: "badge" }, u.kind) : null,
            u.signed ? h("span", { class: "badge" }, "signed") : null,
          ),
          h("div", { class: "meta" }, u.createdAt, u.gitCommit ? ` · ${u.gitCommit.slice(0, 12)}` : "", u.republishedFrom ? ` · republished from ${u.republishedFrom}` : ""),
          u.message ? h("div", { class: "message" }, u.message) : null,
          actions(ctx, rt, u, status),
        ),
      );
      el.append(h("h3", {}, `${rt.platform} · runtime ${rt.runtimeVersion}`), h("ol", { class: "timeline" }, ...items));
    }
  },
});
