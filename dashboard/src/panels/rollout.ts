// Rollout and halt per channel: what GET /api/explain says each served channel does now (rollout
// percentage, control update, halt), and for publishers and owners the changes of
// POST /api/rollout/<slug>/<platform>/<runtime> — grow the percentage, complete, revert, halt,
// resume — each confirmed first and sent with the update the page saw served (expectedCurrent).
import { api, can } from "../api";
import { h, errorBox } from "../dom";
import { registerPanel, type PanelContext, type RuntimeUpdates, type UpdateSummary } from "./registry";

interface Explanation {
  channel: string;
  serving?: string;
  servingKind?: string;
  rollout?: { updateId: string; percentage: number; controlUpdateId?: string };
  halted?: { updateId: string; at: string; reason: string; controlUpdateId?: string };
  answer?: string;
}

/** What the last action did, shown once by the next render. */
let flash = "";

function query(ctx: PanelContext, rt: RuntimeUpdates, channel: string): string {
  const q = new URLSearchParams({ slug: ctx.slug, platform: rt.platform, runtimeVersion: rt.runtimeVersion, channel });
  return `/api/explain?${q}`;
}

function target(ctx: PanelContext, rt: RuntimeUpdates): string {
  return `/api/rollout/${encodeURIComponent(ctx.slug)}/${encodeURIComponent(rt.platform)}/${encodeURIComponent(rt.runtimeVersion)}`;
}

function describe(x: Explanation): HTMLElement {
  const lines: (HTMLElement | string)[] = [];
  lines.push(h("div", {}, "Serving ", x.serving ? h("code", { class: "id" }, x.serving) : "nothing", x.servingKind && x.servingKind !== "update" ? ` (${x.servingKind})` : ""));
  if (x.rollout) {
    const bar = h("span", { class: "bar-fill" });
    bar.style.width = `${Math.min(100, x.rollout.percentage)}%`;
    lines.push(
      h(
        "div",
        { "data-testid": "rollout-percentage-shown" },
        h("span", { class: "badge on" }, `rollout ${x.rollout.percentage} %`),
        " of devices get ",
        h("code", { class: "id" }, x.rollout.updateId),
        "; the others get ",
        x.rollout.controlUpdateId ? h("code", { class: "id" }, x.rollout.controlUpdateId) : "no update (the channel was empty before)",
      ),
      h("span", { class: "bar", "aria-hidden": "true" }, bar),
    );
  } else {
    lines.push(h("div", { class: "muted" }, "No rollout: every device on this channel gets the update it serves."));
  }
  if (x.halted) {
    lines.push(
      h(
        "div",
        { "data-testid": "rollout-halted", "data-update-id": x.halted.updateId },
        h("span", { class: "badge warn" }, "halted"),
        " ",
        h("code", { class: "id" }, x.halted.updateId),
        ` at ${x.halted.at}: ${x.halted.reason || "no reason given"}. Devices get `,
        x.halted.controlUpdateId ? h("code", { class: "id" }, x.halted.controlUpdateId) : "their embedded update",
        " again (republished).",
      ),
    );
  }
  return h("div", { class: "rollout-state", "data-testid": "rollout-state" }, ...lines);
}

async function act(ctx: PanelContext, status: HTMLElement, question: string, url: string, body: Record<string, unknown>, done: string, hint?: string) {
  if (!window.confirm(question)) return;
  status.replaceChildren(h("span", { class: "loading" }, "Working…"));
  try {
    await api("POST", url, body);
    flash = done;
    ctx.refresh();
  } catch (e) {
    status.replaceChildren(errorBox(`${(e as Error).message}${hint ? ` ${hint}` : ""}`));
  }
}

function actions(ctx: PanelContext, rt: RuntimeUpdates, x: Explanation, status: HTMLElement): HTMLElement | null {
  if (!can.publish(ctx.role)) return null;
  const url = target(ctx, rt);
  const where = `${rt.platform} ${rt.runtimeVersion} on ${x.channel}`;
  const base = { channel: x.channel, ...(x.serving ? { expectedCurrent: x.serving } : {}) };
  const parts: HTMLElement[] = [];
  if (x.rollout) {
    const r = x.rollout;
    const input = h("input", {
      type: "number",
      min: String(r.percentage + 1),
      max: "100",
      value: String(Math.min(100, r.percentage + 10)),
      "aria-label": "New rollout percentage",
      class: "pct",
      "data-testid": "rollout-percentage",
    }) as HTMLInputElement;
    parts.push(
      h("label", { class: "inline" }, "Grow to", input, "%"),
      h("button", {
        type: "button",
        "data-testid": "rollout-set",
        onclick: () => {
          const p = Number(input.value);
          if (!Number.isInteger(p) || p <= r.percentage || p > 100) {
            status.replaceChildren(errorBox(`A rollout only grows: enter a whole number from ${r.percentage + 1} to 100.`));
            return;
          }
          void act(ctx, status, `Serve ${r.updateId} to ${p} % of ${where}?`, url, { ...base, percentage: p }, p === 100 ? "Rollout completed." : `Rollout at ${p} %.`);
        },
      }, "Set"),
      h("button", {
        type: "button",
        "data-testid": "rollout-complete",
        onclick: () => act(ctx, status, `Complete the rollout: every device on ${where} gets ${r.updateId}?`, url, { ...base, percentage: 100 }, "Rollout completed."),
      }, "Complete"),
      h("button", {
        type: "button",
        class: "danger",
        "data-testid": "rollout-revert",
        onclick: () => act(ctx, status, `Revert the rollout: every device on ${where} goes back to ${r.controlUpdateId ?? "its embedded update"}?`, url, { ...base, revert: true }, "Rollout reverted."),
      }, "Revert"),
    );
  }
  if (x.halted) {
    parts.push(
      h("button", {
        type: "button",
        "data-testid": "rollout-resume",
        onclick: () =>
          act(ctx, status, `Resume ${x.halted!.updateId}: serve it again to every device on ${where}?`, url, { ...base, resume: true }, "Resumed.",
            rt.updates.some((v) => v.signed) ? "This app signs its updates: resume with `publish-cli rollout --resume --private-key …`, which signs the republished update." : undefined),
      }, "Resume"),
    );
  } else if (x.serving) {
    const reason = h("input", { type: "text", placeholder: "reason (optional)", maxlength: "200", "aria-label": "Halt reason", "data-testid": "halt-reason" }) as HTMLInputElement;
    parts.push(
      h("label", { class: "inline grow" }, reason),
      h("button", {
        type: "button",
        class: "danger",
        "data-testid": "rollout-halt",
        onclick: () =>
          act(ctx, status, `Halt ${x.serving} on ${where}? Devices get what the channel served before it (republished).`, url,
            { ...base, halt: true, ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) }, "Halted."),
      }, "Halt"),
    );
  }
  return parts.length ? h("div", { class: "actions", "data-testid": "rollout-actions" }, ...parts) : null;
}

registerPanel({
  id: "rollout",
  title: "Rollout and halt",
  order: 30,
  async render(ctx, el) {
    const served: [RuntimeUpdates, UpdateSummary][] = [];
    for (const rt of ctx.updates) for (const u of rt.updates) if (u.current) served.push([rt, u]);
    if (served.length === 0) {
      el.append(h("p", { class: "muted" }, "No channel serves an update yet. Start a staged rollout with `publish-cli publish … --rollout-percentage 10`."));
      return;
    }
    const status = h("div", { class: "action-status", "data-testid": "rollout-status" });
    if (flash) status.append(h("span", { class: "ok", role: "status" }, flash));
    flash = "";
    el.append(status);
    const states = await Promise.all(
      served.map(([rt, u]) => api<Explanation>("GET", query(ctx, rt, u.channel)).then((x) => x, (e: Error) => e)),
    );
    served.forEach(([rt, u], i) => {
      const x = states[i];
      const head = h("h4", {}, `${rt.platform} · runtime ${rt.runtimeVersion} · ${u.channel}`);
      if (x instanceof Error) {
        el.append(h("div", { class: "rollout-row", "data-testid": "rollout-row" }, head, errorBox(x.message)));
        return;
      }
      const rowStatus = h("div", { class: "action-status" });
      el.append(
        h(
          "div",
          { class: "rollout-row", "data-testid": "rollout-row", "data-channel": u.channel, "data-platform": rt.platform },
          head,
          describe({ ...x, channel: x.channel || u.channel }),
          actions(ctx, rt, { ...x, channel: x.channel || u.channel }, rowStatus),
          rowStatus,
        ),
      );
    });
  },
});
