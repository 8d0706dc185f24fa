// The dashboard's entry: who am I, then the page the URL's hash names. Routes:
// #/apps, #/apps/<slug>, #/apps/<slug>/keys, #/apps/<slug>/members, #/apps/<slug>/audit.
import { api, setCsrf, type Me } from "./api";
import { h, clear, loading } from "./dom";
import { appPage, appsPage, auditPage, keysPage, membersPage, signIn } from "./pages";

const main = document.getElementById("main") as HTMLElement;
const who = document.getElementById("who") as HTMLElement;
let me: Me | undefined;

function header(): void {
  clear(who);
  if (!me) return;
  who.append(
    h("span", { "data-testid": "signed-in-as" }, me.user.login),
    h("button", {
      type: "button",
      class: "link",
      onclick: async () => {
        try { await api("POST", "/api/auth/logout"); } catch { /* signed out either way */ }
        me = undefined;
        header();
        signIn(main, ready);
      },
    }, "Sign out"),
  );
}

function ready(m: Me): void {
  me = m;
  setCsrf(m.csrf ?? "");
  header();
  if (!location.hash.startsWith("#/apps")) location.hash = "#/apps";
  else void route();
}

async function route(): Promise<void> {
  if (!me) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [top, slug, sub] = parts;
  if (top !== "apps" || !slug) return appsPage(main, me, (hash) => (location.hash = hash));
  if (sub === "keys") return keysPage(main, me, slug);
  if (sub === "members") return membersPage(main, me, slug);
  if (sub === "audit") return auditPage(main, me, slug);
  return appPage(main, me, slug);
}

window.addEventListener("hashchange", () => void route());
window.addEventListener("signed-out", (e) => {
  me = undefined;
  header();
  signIn(main, ready, String((e as CustomEvent).detail ?? "Your session ended; sign in again."));
});

async function start(): Promise<void> {
  clear(main).append(loading("your session"));
  try {
    ready(await api("GET", "/api/auth/me"));
  } catch {
    signIn(main, ready);
  }
}

void start();
