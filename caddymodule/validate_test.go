package caddymodule

import "testing"

func TestIsValidateCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"craftedge", "validate", "--config", "Caddyfile"}, true},
		{[]string{"craftedge", "adapt", "--config", "Caddyfile", "--validate"}, true},
		{[]string{"craftedge", "adapt", "--validate=true"}, true},
		{[]string{"craftedge", "adapt", "--config", "Caddyfile"}, false},
		{[]string{"craftedge", "adapt", "--validate=false"}, false},
		{[]string{"craftedge", "run", "--config", "validate"}, false},
		{[]string{"craftedge", "reload"}, false},
		{[]string{"craftedge"}, false},
	} {
		if got := isValidateCommand(tc.args); got != tc.want {
			t.Errorf("isValidateCommand(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
