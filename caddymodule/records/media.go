package records

import (
	"github.com/craftedge/craftedge/vendors"
)

// RecordAnswer is a record as the read model answers it: the stored record
// and, for a resource with media fields, where each media file is
// (caddymodule.MediaRef by field: its edge URL once stored, the vendor URL
// until then).
type RecordAnswer struct {
	vendors.Record
	Media map[string]any `json:"media,omitempty"`
}

// answer is rec with its media.
func (h *RecordsHandler) answer(rec vendors.Record) RecordAnswer {
	return RecordAnswer{Record: rec, Media: h.app.MediaRefs(rec)}
}
