package vendorsim

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestRegionsShareDataWithOwnKnobs(t *testing.T) {
	rec := &sleepRecorder{}
	sim := New(Options{Products: 3, Contacts: 1, Sleep: rec.Sleep})
	defer sim.Close()
	east, west := sim.NewEndpoint(APICommerce), sim.NewEndpoint(APICommerce)
	se, err := east.Start("")
	if err != nil {
		t.Fatal(err)
	}
	sw, err := west.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(se.Addr(), "127.0.0.1:") || se.URL() != "http://"+se.Addr() || se.Addr() == sw.Addr() {
		t.Fatalf("addresses %s %s", se.Addr(), sw.Addr())
	}
	_ = east.Chaos().Set(ChaosConfig{Latency: time.Second})

	if _, err := sim.Update(KindProduct, "2", func(f map[string]any) { f["stock"] = 42 }); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{se.URL(), sw.URL()} {
		status, body := get(t, base+"/v2/products/2", DefaultCommerceToken)
		if status != 200 || !strings.Contains(body, `"stock":42`) || !strings.Contains(body, `"version":2`) {
			t.Fatalf("%s: %d %s", base, status, body)
		}
	}
	if len(rec.delays) != 1 || rec.delays[0] != time.Second {
		t.Fatalf("delays %v: only east is slow", rec.delays)
	}
	if east.Requests().Total != 1 || west.Requests().Total != 1 || sim.Requests().Total != 0 {
		t.Errorf("counters east %d west %d default %d", east.Requests().Total, west.Requests().Total, sim.Requests().Total)
	}
	// A commerce-only endpoint does not serve the CRM.
	if status, _ := get(t, sw.URL()+"/v1/contacts/c-1", DefaultCRMToken); status != 404 {
		t.Errorf("CRM on a commerce endpoint: %d", status)
	}
	if got := west.APIs(); len(got) != 1 || got[0] != APICommerce {
		t.Errorf("APIs %v", got)
	}
	if err := se.Close(); err != nil {
		t.Fatal(err)
	}
	if err := se.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := http.Get(se.URL()); err == nil {
		t.Error("closed server still answers")
	}
}

func TestCloseReleasesHungRequests(t *testing.T) {
	sim := New(Options{Products: 1})
	srv, err := sim.Start("")
	if err != nil {
		t.Fatal(err)
	}
	hanging := make(chan struct{}, 1)
	sim.Chaos().onHang = func() { hanging <- struct{}{} }
	_ = sim.Chaos().Set(ChaosConfig{Outage: OutageHang})
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("GET", srv.URL()+"/v2/products/1", nil)
		req.Header.Set("Authorization", "Bearer "+DefaultCommerceToken)
		res, err := http.DefaultClient.Do(req) // no timeout: only Close can end it
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-hanging
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("hung request got a response")
	}
	if _, err := sim.Start(""); err == nil {
		t.Error("Start after Close succeeded")
	}
	if err := sim.Close(); err != nil {
		t.Error("second Close:", err)
	}
}
