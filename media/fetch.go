package media

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// Errors of the fetcher, besides the store's.
var (
	// ErrRefused: the URL is not one the fetcher may call (scheme,
	// credentials, or a private, loopback or link-local address).
	ErrRefused = errors.New("media: URL refused")
	// ErrGone: the server answered 404 or 410.
	ErrGone = errors.New("media: not found at the source")
	// ErrRejected: the server answered another 4xx (other than 408 and
	// 429): retrying will not help.
	ErrRejected = errors.New("media: request rejected by the source")
)

// FetcherOptions configure a Fetcher.
type FetcherOptions struct {
	// Timeout bounds one download, headers and body. Required.
	Timeout time.Duration
	// AllowPrivate lets the fetcher connect to private, loopback,
	// link-local and other non-public addresses. Off, an address is
	// checked after name resolution, on every connection and redirect,
	// so DNS rebinding cannot reach the internal network.
	AllowPrivate bool
	// UserAgent is sent with every request.
	UserAgent string
}

// Fetcher downloads media files into a Store: plain HTTP GETs (no vendor
// credentials are sent: media URLs are often on a CDN host), no proxy
// from the environment, at most 5 redirects, bounded in time and size.
type Fetcher struct {
	opts   FetcherOptions
	client *http.Client
}

// NewFetcher returns a Fetcher.
func NewFetcher(opts FetcherOptions) (*Fetcher, error) {
	if opts.Timeout <= 0 {
		return nil, fmt.Errorf("media: fetcher timeout must be positive, got %v", opts.Timeout)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if !opts.AllowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			return checkAddress(address)
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: opts.Timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       time.Minute,
	}
	client := &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("%w: more than 5 redirects", ErrRefused)
			}
			return CheckURL(req.URL.String())
		},
	}
	return &Fetcher{opts: opts, client: client}, nil
}

// CheckURL refuses what a fetcher never requests: other schemes than http
// and https, URLs without a host, credentials in the URL.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme %q (want http or https)", ErrRefused, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: no host", ErrRefused)
	}
	if u.User != nil {
		return fmt.Errorf("%w: credentials in the URL", ErrRefused)
	}
	return nil
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// checkAddress refuses a connection to a non-public address.
func checkAddress(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: address %q", ErrRefused, host)
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() ||
		ip.IsUnspecified() || ip.IsMulticast() || cgnat.Contains(ip) {
		return fmt.Errorf("%w: %s is not a public address (allow_private_addresses allows it)", ErrRefused, ip)
	}
	return nil
}

// Fetch downloads rawURL into store: at most maxSize bytes of a type in
// allowed. Errors match ErrRefused, ErrGone, ErrRejected, ErrTooLarge,
// ErrType, ErrStoreFull, ErrNoSpace, or are transient (network, 5xx,
// 408, 429, timeouts).
func (f *Fetcher) Fetch(ctx context.Context, rawURL string, store *Store, maxSize int64, allowed []string) (Object, error) {
	if err := CheckURL(rawURL); err != nil {
		return Object{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return Object{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if f.opts.UserAgent != "" {
		req.Header.Set("User-Agent", f.opts.UserAgent)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			return Object{}, fmt.Errorf("%w: %v", ErrRefused, err)
		}
		return Object{}, fmt.Errorf("media: GET %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusNotFound || code == http.StatusGone:
		return Object{}, fmt.Errorf("%w: GET %s: %s", ErrGone, rawURL, resp.Status)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return Object{}, fmt.Errorf("media: GET %s: %s", rawURL, resp.Status)
	case code >= 400:
		return Object{}, fmt.Errorf("%w: GET %s: %s", ErrRejected, rawURL, resp.Status)
	case code != http.StatusOK:
		return Object{}, fmt.Errorf("%w: GET %s: unexpected %s", ErrRejected, rawURL, resp.Status)
	}
	if resp.ContentLength > maxSize {
		return Object{}, fmt.Errorf("%w: GET %s announces %d bytes, the bound is %d", ErrTooLarge, rawURL, resp.ContentLength, maxSize)
	}
	obj, err := store.Put(resp.Body, maxSize, allowed)
	if err != nil {
		return Object{}, fmt.Errorf("media: GET %s: %w", rawURL, err)
	}
	return obj, nil
}
