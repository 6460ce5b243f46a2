package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
)

// authUser returns the user an authentication handler in front (basic_auth,
// forward_auth) set in {http.auth.user.id}, or "".
func authUser(r *http.Request) string {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}
