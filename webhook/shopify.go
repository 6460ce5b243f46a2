package webhook

import (
	"encoding/base64"
	"errors"
	"time"
)

func verifyShopify(req Request, keys [][]byte) (Delivery, error) {
	sigRaw, err := requireHeader(req.Header, HeaderShopifyHMAC, maxHeaderLen)
	if err != nil {
		return Delivery{}, err
	}
	// The id is not signed (see the package documentation) but it is the
	// replay key, so it is required.
	id, err := requireHeader(req.Header, HeaderShopifyWebhookID, maxIDLen)
	if err != nil {
		return Delivery{}, err
	}
	sig, err := base64.StdEncoding.DecodeString(sigRaw)
	if err != nil {
		return Delivery{}, malformed(HeaderShopifyHMAC, "not base64")
	}
	if len(sig) != 32 {
		return Delivery{}, malformed(HeaderShopifyHMAC, "not 32 bytes")
	}
	if !anyMatch(keys, [][]byte{sig}, req.Body) {
		return Delivery{}, ErrBadSignature
	}
	return Delivery{ID: id}, nil
}

func signShopify(req *Request, key []byte, id string, now time.Time) error {
	if id == "" {
		return errors.New("webhook: Sign: the shopify scheme needs a delivery id")
	}
	req.Header.Set(HeaderShopifyHMAC, base64.StdEncoding.EncodeToString(macOf(key, req.Body)))
	req.Header.Set(HeaderShopifyWebhookID, id)
	req.Header.Set(HeaderShopifyTriggeredAt, now.UTC().Format(time.RFC3339Nano))
	return nil
}
