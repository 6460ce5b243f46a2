package webhook_test

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/craftedge/craftedge/webhook"
)

func Example() {
	cfg := webhook.Config{
		Scheme:  webhook.SchemeStandard,
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	req := webhook.Request{
		Method: http.MethodPost,
		URL:    "https://example.com/webhooks/vendor",
		Header: http.Header{
			"Webhook-Id":        {"msg_p5jXN8AQM9LWM0D4loKWxJek"},
			"Webhook-Timestamp": {"1614265330"},
			"Webhook-Signature": {"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
		},
		Body: []byte(`{"test": 2432232314}`),
	}

	d, err := cfg.Verify(req, time.Unix(1614265330, 0))
	fmt.Println(d.ID, err)

	_, err = cfg.Verify(req, time.Unix(1614265330, 0).Add(time.Hour))
	fmt.Println(errors.Is(err, webhook.ErrTimestampTooOld))

	req.Header.Del("Webhook-Id")
	_, err = cfg.Verify(req, time.Unix(1614265330, 0))
	fmt.Println(err)
	// Output:
	// msg_p5jXN8AQM9LWM0D4loKWxJek <nil>
	// true
	// webhook: missing header webhook-id
}
