package media

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketMediaURLs maps a vendor URL to the Entry of its stored file.
var bucketMediaURLs = []byte("media_urls")

// Entry is a vendor URL's stored file.
type Entry struct {
	Object
	// FetchedAt is when the file was downloaded.
	FetchedAt time.Time `json:"fetched_at"`
	// Widths are the scaled-down copies of an image, by width in pixels
	// (see Derive).
	Widths map[int]Object `json:"widths,omitempty"`
}

// Hashes are the stored files of the entry: the file and its copies.
func (e Entry) Hashes() []string {
	out := []string{e.Hash}
	for _, o := range e.Widths {
		out = append(out, o.Hash)
	}
	return out
}

// Index maps vendor URLs to stored files, in the shared bbolt file (the
// files themselves are in the Store). It is safe for concurrent use.
type Index struct{ db *bolt.DB }

// OpenIndex creates (if needed) the index bucket in db, which it shares
// and never closes.
func OpenIndex(db *bolt.DB) (*Index, error) {
	if db == nil {
		return nil, errors.New("media: OpenIndex: nil *bbolt.DB")
	}
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketMediaURLs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("media: opening the index in %s: %w", db.Path(), err)
	}
	return &Index{db: db}, nil
}

// Lookup returns the entry of url.
func (x *Index) Lookup(url string) (Entry, bool, error) {
	var e Entry
	found := false
	err := x.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMediaURLs).Get([]byte(url))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &e)
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("media: index: %w", err)
	}
	return e, found, nil
}

// Bind records that url is stored as e.
func (x *Index) Bind(url string, e Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return x.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMediaURLs).Put([]byte(url), v)
	})
}

// Unbind forgets the given URLs.
func (x *Index) Unbind(urls ...string) error {
	if len(urls) == 0 {
		return nil
	}
	return x.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMediaURLs)
		for _, u := range urls {
			if err := b.Delete([]byte(u)); err != nil {
				return err
			}
		}
		return nil
	})
}

// All returns every URL's entry.
func (x *Index) All() (map[string]Entry, error) {
	out := map[string]Entry{}
	err := x.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMediaURLs).ForEach(func(k, v []byte) error {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("entry of %q: %w", k, err)
			}
			out[string(k)] = e
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("media: index: %w", err)
	}
	return out, nil
}
