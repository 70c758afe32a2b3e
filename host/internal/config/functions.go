package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// maxFileSize bounds what file() reads: it is meant for secrets and small
// snippets, not for data.
const maxFileSize = 1 << 20

// Functions returns the functions available in configuration expressions.
// file() resolves relative paths against dir, the directory of the file
// being evaluated.
func Functions(dir string) map[string]function.Function {
	return map[string]function.Function{
		"env":  envFunc,
		"file": fileFunc(dir),

		"abs":        stdlib.AbsoluteFunc,
		"ceil":       stdlib.CeilFunc,
		"chomp":      stdlib.ChompFunc,
		"coalesce":   stdlib.CoalesceFunc,
		"compact":    stdlib.CompactFunc,
		"concat":     stdlib.ConcatFunc,
		"contains":   stdlib.ContainsFunc,
		"csvdecode":  stdlib.CSVDecodeFunc,
		"distinct":   stdlib.DistinctFunc,
		"element":    stdlib.ElementFunc,
		"flatten":    stdlib.FlattenFunc,
		"floor":      stdlib.FloorFunc,
		"format":     stdlib.FormatFunc,
		"formatlist": stdlib.FormatListFunc,
		"indent":     stdlib.IndentFunc,
		"join":       stdlib.JoinFunc,
		"jsondecode": stdlib.JSONDecodeFunc,
		"jsonencode": stdlib.JSONEncodeFunc,
		"keys":       stdlib.KeysFunc,
		"length":     stdlib.LengthFunc,
		"log":        stdlib.LogFunc,
		"lookup":     stdlib.LookupFunc,
		"lower":      stdlib.LowerFunc,
		"max":        stdlib.MaxFunc,
		"merge":      stdlib.MergeFunc,
		"min":        stdlib.MinFunc,
		"parseint":   stdlib.ParseIntFunc,
		"pow":        stdlib.PowFunc,
		"range":      stdlib.RangeFunc,
		"regex":      stdlib.RegexFunc,
		"regexall":   stdlib.RegexAllFunc,
		"replace":    stdlib.ReplaceFunc,
		"reverse":    stdlib.ReverseListFunc,
		"signum":     stdlib.SignumFunc,
		"slice":      stdlib.SliceFunc,
		"sort":       stdlib.SortFunc,
		"split":      stdlib.SplitFunc,
		"strlen":     stdlib.StrlenFunc,
		"strrev":     stdlib.ReverseFunc,
		"substr":     stdlib.SubstrFunc,
		"title":      stdlib.TitleFunc,
		"tobool":     stdlib.MakeToFunc(cty.Bool),
		"tolist":     stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":      stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":   stdlib.MakeToFunc(cty.Number),
		"tostring":   stdlib.MakeToFunc(cty.String),
		"trim":       stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc,
		"trimspace":  stdlib.TrimSpaceFunc,
		"trimsuffix": stdlib.TrimSuffixFunc,
		"upper":      stdlib.UpperFunc,
		"values":     stdlib.ValuesFunc,
		"zipmap":     stdlib.ZipmapFunc,
	}
}

// evalContext is the context for expressions of a file in dir. It has no
// variables: a reference is reported as "Variables not allowed".
func evalContext(dir string) *hcl.EvalContext {
	return &hcl.EvalContext{Functions: Functions(dir)}
}

// envFunc is env(name) or env(name, default).
var envFunc = function.New(&function.Spec{
	Description: "Returns the value of an environment variable; an error when it is unset, unless a default is given.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.String},
	Type: func(args []cty.Value) (cty.Type, error) {
		if len(args) > 2 {
			return cty.NilType, function.NewArgErrorf(2, "too many arguments: env takes a name and an optional default")
		}
		return cty.String, nil
	},
	RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		name := args[0].AsString()
		if name == "" {
			return cty.NilVal, function.NewArgErrorf(0, "the variable name must not be empty")
		}
		if v, ok := os.LookupEnv(name); ok {
			return cty.StringVal(v), nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return cty.NilVal, fmt.Errorf("environment variable %q is not set; set it, or give a default with env(%q, \"default\")", name, name)
	},
})

// fileFunc is file(path), relative to dir.
func fileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description:  "Returns the content of a text file; a relative path is relative to the configuration file's directory.",
		Params:       []function.Parameter{{Name: "path", Type: cty.String}},
		Type:         function.StaticReturnType(cty.String),
		RefineResult: func(b *cty.RefinementBuilder) *cty.RefinementBuilder { return b.NotNull() },
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			full := p
			if !filepath.IsAbs(p) {
				full = filepath.Join(dir, p)
			}
			b, err := readSmallFile(full)
			switch {
			case errors.Is(err, fs.ErrNotExist) && full != p:
				return cty.NilVal, fmt.Errorf("file %q does not exist (looked for %q)", p, full)
			case errors.Is(err, fs.ErrNotExist):
				return cty.NilVal, fmt.Errorf("file %q does not exist", p)
			case err != nil:
				return cty.NilVal, fmt.Errorf("reading file %q: %w", p, err)
			case !utf8.Valid(b):
				return cty.NilVal, fmt.Errorf("file %q is not UTF-8 text", p)
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

// readSmallFile reads a regular file of at most maxFileSize bytes. Other
// files are refused before they are opened: a device such as /dev/zero
// reports a size of 0 and never ends, and opening a FIFO blocks until a
// writer comes. The read stops past the limit, as files under /proc report
// a size of 0 too.
func readSmallFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := regularFile(st); err != nil {
		return nil, err
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if st, err = fh.Stat(); err != nil {
		return nil, err
	}
	if err := regularFile(st); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("it is larger than %d bytes", maxFileSize)
	}
	return b, nil
}

func regularFile(st fs.FileInfo) error {
	switch {
	case st.IsDir():
		return errors.New("it is a directory")
	case !st.Mode().IsRegular():
		return errors.New("it is not a regular file")
	case st.Size() > maxFileSize:
		return fmt.Errorf("it is larger than %d bytes", maxFileSize)
	}
	return nil
}
