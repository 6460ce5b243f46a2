package vendorsim

import (
	"net/http"
	"reflect"
	"testing"
	"time"
)

func TestControlEndpointSetsKnobs(t *testing.T) {
	h := newHarness(t, Options{Products: 1})
	r := h.call(t, "POST", ControlChaosPath, `{"latency":"250ms","jitter":1000000,"throttle_next":1,"outage":"","only":["/v2/"],"webhook_drop_rate":0.5}`, "Authorization", "")
	wantStatus(t, r, http.StatusOK)
	got := h.sim.Chaos().Get()
	want := ChaosConfig{Latency: 250 * time.Millisecond, Jitter: time.Millisecond, ThrottleNext: 1, Only: []string{"/v2/"}}
	if !reflect.DeepEqual(got, want) || h.sim.WebhookDropRate() != 0.5 {
		t.Fatalf("knobs %+v (drop %v), want %+v", got, h.sim.WebhookDropRate(), want)
	}
	if m := r.json(t); m["latency"] != "250ms" || m["jitter"] != "1ms" || m["webhook_drop_rate"] != 0.5 {
		t.Fatalf("response %s", r.body)
	}

	// A POST merges: absent fields keep their value.
	wantStatus(t, h.call(t, "POST", ControlChaosPath, `{"schema_change":true}`), http.StatusOK)
	if got := h.sim.Chaos().Get(); !got.SchemaChange || got.Latency != 250*time.Millisecond {
		t.Fatalf("after merge: %+v", got)
	}

	// Bad input changes nothing.
	for _, body := range []string{`{"error_rate":2}`, `{"latncy":"1s"}`, `{"latency":"soon"}`, `{"outage":"partial"}`, `{"webhook_drop_rate":-1}`, `nope`} {
		wantStatus(t, h.call(t, "POST", ControlChaosPath, body), http.StatusBadRequest)
	}
	if got := h.sim.Chaos().Get(); got.ErrorRate != 0 || got.Latency != 250*time.Millisecond || h.sim.WebhookDropRate() != 0.5 {
		t.Fatalf("a refused POST changed the knobs: %+v", got)
	}

	wantStatus(t, h.call(t, "GET", ControlChaosPath, nil), http.StatusOK)
	wantStatus(t, h.call(t, "DELETE", ControlChaosPath, nil), http.StatusOK)
	if got := h.sim.Chaos().Get(); !reflect.DeepEqual(got, ChaosConfig{}) || h.sim.WebhookDropRate() != 0 {
		t.Fatalf("after DELETE: %+v", got)
	}
	// Control requests are neither counted nor subject to chaos.
	_ = h.sim.Chaos().Set(ChaosConfig{Outage: OutageClose})
	wantStatus(t, h.call(t, "GET", ControlChaosPath, nil), http.StatusOK)
	if st := h.sim.Requests(); st.Total != 0 {
		t.Fatalf("control requests counted: %+v", st)
	}
}

func TestCountersAndReset(t *testing.T) {
	h := newHarness(t, Options{Products: 2, Contacts: 1})
	h.call(t, "GET", "/v2/products/1", nil)
	h.call(t, "GET", "/v2/products/2", nil)
	h.call(t, "GET", "/v2/products/9", nil)
	h.call(t, "GET", "/v2/products", nil)
	h.call(t, "PUT", "/v2/products/1", `{}`)
	h.call(t, "POST", "/v1/contacts", `{}`)
	h.call(t, "GET", "/v1/contacts/c-1", nil, "Authorization", "")
	h.call(t, "GET", "/nowhere", nil)
	st := h.sim.Requests()
	checks := []struct {
		route     string
		status, n int
	}{
		{RouteProductGet, 200, 2}, {RouteProductGet, 404, 1}, {RouteProductList, 200, 1},
		{RouteProductPut, 200, 1}, {RouteContactCreate, 201, 1}, {RouteContactGet, 401, 1},
		{RouteUnmatched, 404, 1},
	}
	for _, c := range checks {
		if got := st.Count(c.route, c.status); got != c.n {
			t.Errorf("%s %d: %d, want %d", c.route, c.status, got, c.n)
		}
	}
	if st.Total != 8 || st.ByStatus[200] != 4 || st.ByRoute[RouteProductGet].Total != 3 {
		t.Errorf("stats %+v", st)
	}
	// Over HTTP too.
	r := h.call(t, "GET", ControlRequestsPath, nil)
	if m := r.json(t); m["total"] != 8.0 {
		t.Errorf("GET %s: %s", ControlRequestsPath, r.body)
	}
	h.sim.Reset()
	if st := h.sim.Requests(); st.Total != 0 || len(st.ByRoute) != 0 {
		t.Errorf("after Reset: %+v", st)
	}
	h.call(t, "GET", "/v2/products/1", nil)
	wantStatus(t, h.call(t, "DELETE", ControlRequestsPath, nil), 200)
	if h.sim.Requests().Total != 0 {
		t.Error("DELETE /__sim/requests did not reset")
	}
}
