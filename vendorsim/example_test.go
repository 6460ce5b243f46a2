package vendorsim_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/craftedge/craftedge/vendorsim"
)

func Example() {
	sim := vendorsim.New(vendorsim.Options{Products: 3, Contacts: 2, Seed: 1})
	defer sim.Close()
	srv, err := sim.Start("") // a free port on 127.0.0.1
	if err != nil {
		panic(err)
	}

	// The vendor throttles the next request.
	_ = sim.Chaos().Set(vendorsim.ChaosConfig{ThrottleNext: 1, RetryAfter: 2 * time.Second})
	for range 2 {
		req, _ := http.NewRequest("GET", srv.URL()+"/v2/products/3", nil)
		req.Header.Set("Authorization", "Bearer "+vendorsim.DefaultCommerceToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		fmt.Printf("%d Retry-After=%q\n", res.StatusCode, res.Header.Get("Retry-After"))
	}
	st := sim.Requests()
	fmt.Println(st.Count(vendorsim.RouteProductGet, 429), st.Count(vendorsim.RouteProductGet, 200))
	// Output:
	// 429 Retry-After="2"
	// 200 Retry-After=""
	// 1 1
}
