// Sign in with a demo user; back to the page that asked for it.

import { signIn } from "../api.js";
import { h, messageArea } from "../dom.js";
import { go } from "../router.js";

function render(container) {
  const errors = messageArea("signin-error");
  const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true, value: "alice" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { id: "signin-form", class: "stack", onsubmit: onSubmit },
    h("div", { class: "field" }, h("label", { for: "username" }, "User name"), username),
    h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password),
    submit,
  );

  async function onSubmit(event) {
    event.preventDefault();
    errors.clear();
    submit.disabled = true;
    try {
      await signIn(username.value.trim(), password.value);
      const back = sessionStorage.getItem("after-signin");
      sessionStorage.removeItem("after-signin");
      go(back && back !== "#/signin" ? back.replace(/^#/, "") : "/shop");
    } catch (error) {
      errors.show(error.status === 401 ? "The user name or password is wrong." : error.message);
      password.focus();
    } finally {
      submit.disabled = false;
    }
  }

  container.append(h("section", { class: "panel narrow" },
    h("h1", { text: "Sign in" }),
    form,
    errors,
    h("p", { class: "hint" }, "Demo users: alice and bob (customers), admin. The password is the server's ",
      h("code", { text: "DEMO_PASSWORD" }), " (demo-pass-123 unless changed)."),
  ));
}

export const routes = [{ pattern: /^\/signin$/, title: "Sign in", public: true, render }];
