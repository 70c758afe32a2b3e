package catalog

import (
	"fmt"

	"github.com/dynworkers/dynworkers/host/internal/api"
)

// List reports the catalog as the list_classes result (GET /v1/classes,
// dynworkers classes -json): every class, in the order of Classes, and
// every broken plugin file. The lists are empty, never nil, so they
// encode as [].
func (c *Catalog) List() api.ClassList {
	out := api.ClassList{Classes: []api.Class{}, Broken: []api.BrokenFile{}}
	for _, cl := range c.Classes() {
		ci := api.Class{Name: cl.Name, Aliases: cl.Aliases, Description: cl.Description, Version: cl.Version,
			Binary: cl.Binary.Path, SHA256: fmt.Sprintf("%x", cl.Binary.SHA256), Schema: []api.Attribute{}}
		for _, a := range cl.Schema {
			ci.Schema = append(ci.Schema, api.Attribute{Name: a.Name, Type: string(a.Type), Required: a.Required,
				Default: a.Default, Sensitive: a.Sensitive, Description: a.Description})
		}
		out.Classes = append(out.Classes, ci)
	}
	for _, p := range c.Problems() {
		out.Broken = append(out.Broken, api.BrokenFile{Path: p.Path, Error: p.Err.Error()})
	}
	return out
}
