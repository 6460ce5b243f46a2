package caddymodule

import (
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/craftedge/craftedge/vendors"
)

// unmarshalPush parses one push target inside a resource block (the
// dispenser is on the "push" token):
//
//	push <vendor> [<preset> <index>] {
//	    upsert   [<method>] <path>
//	    delete   [<method>] <path>
//	    body     document|record
//	    id_field <name>
//	    array
//	    fields   <field...>
//	}
func (r *VendorResource) unmarshalPush(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 1 && len(args) != 3 {
		return d.Errf("push wants <vendor> [<preset> <index>] (presets: %s)", strings.Join(vendors.PushPresets, ", "))
	}
	p := &VendorPush{Vendor: args[0]}
	if len(args) == 3 {
		p.Preset, p.Index = args[1], args[2]
		if _, err := vendors.PushPreset(p.Preset, p.Index); err != nil {
			return d.Errf("push %s: %v", p.Vendor, err)
		}
	}
	for _, q := range r.Push {
		if q.Vendor == p.Vendor {
			return d.Errf("push %s is defined twice in this resource", p.Vendor)
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch dir := d.Val(); dir {
		case "upsert", "delete":
			a := d.RemainingArgs()
			method := ""
			if len(a) == 2 {
				method, a = strings.ToUpper(a[0]), a[1:]
			}
			if len(a) != 1 {
				return d.Errf("push %s: %s wants [<method>] <path>", p.Vendor, dir)
			}
			if dir == "upsert" {
				if method != "" && !isHTTPMethod(method) {
					return d.Errf("push %s: upsert method %q (want PUT, POST or PATCH)", p.Vendor, method)
				}
				p.Method, p.Path = method, a[0]
				if err := (vendors.PushSpec{Path: a[0]}).Validate(); err != nil {
					return d.Errf("push %s: upsert: %v", p.Vendor, err)
				}
			} else {
				if method != "" && method != http.MethodDelete && method != http.MethodPost && method != http.MethodPut {
					return d.Errf("push %s: delete method %q (want DELETE, POST or PUT)", p.Vendor, method)
				}
				p.DeleteMethod, p.DeletePath = method, a[0]
				if err := (vendors.PushSpec{Path: "/", DeletePath: a[0]}).Validate(); err != nil {
					return d.Errf("push %s: delete: %v", p.Vendor, err)
				}
			}
		case "body":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if v != vendors.PushBodyDocument && v != vendors.PushBodyRecord {
				return d.Errf("push %s: body %q (want %s or %s)", p.Vendor, v, vendors.PushBodyDocument, vendors.PushBodyRecord)
			}
			p.Body = v
		case "id_field":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			p.IDField = v
		case "array":
			if d.NextArg() {
				return d.ArgErr()
			}
			p.Array = true
		case "fields":
			a := d.RemainingArgs()
			if len(a) == 0 {
				return d.Errf("push %s: fields needs at least one field name", p.Vendor)
			}
			for _, f := range a {
				if _, ok := r.Fields[f]; !ok {
					return d.Errf("push %s: fields: %q is not a field of the resource (declare fields before push)", p.Vendor, f)
				}
				if !slices.Contains(p.Fields, f) {
					p.Fields = append(p.Fields, f)
				}
			}
		default:
			return d.Errf("push %s: unknown subdirective %q", p.Vendor, dir)
		}
	}
	if _, err := p.spec(); err != nil {
		return d.Errf("push %s: %v", p.Vendor, err)
	}
	r.Push = append(r.Push, p)
	return nil
}
