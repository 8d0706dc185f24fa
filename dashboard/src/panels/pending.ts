// Panels whose server side lands separately (rollouts and halt, health counters). Each shows what
// its API answers, or says plainly that this server does not offer it yet; replacing one is a
// matter of rendering real data in its own module.
import { api, ApiError } from "../api";
import { h } from "../dom";
import { registerPanel } from "./registry";

function pending(id: string, title: string, order: number, path: (slug: string) => string, what: string) {
  registerPanel({
    id,
    title,
    order,
    async render(ctx, el) {
      try {
        const data = await api("GET", path(ctx.slug));
        el.append(h("pre", { class: "raw" }, JSON.stringify(data, null, 2)));
      } catch (e) {
        const missing = e instanceof ApiError && (e.status === 404 || e.status === 405);
        el.append(h("p", { class: "muted" }, missing ? `${what} is not available on this server yet.` : (e as Error).message));
      }
    },
  });
}

pending("rollout", "Rollout and halt", 30, (s) => `/api/rollouts?slug=${encodeURIComponent(s)}`, "Rollout percentage and halt/resume");
pending("health", "Adoption and failures", 40, (s) => `/api/health?slug=${encodeURIComponent(s)}`, "Health counters");
