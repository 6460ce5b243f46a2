package webhookhandler

// The webhook tests read the refetched records through craftedge_records.
import _ "github.com/craftedge/craftedge/caddymodule/records"
