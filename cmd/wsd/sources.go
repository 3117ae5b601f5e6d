package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// origin says where a setting's value came from.
type origin int

const (
	fromDefault origin = iota
	fromFlag
	fromEnv
	fromFile
)

// source is where one setting's value came from: the command line, an
// environment variable or a key of the config file.
type source struct {
	origin origin
	env    string // fromEnv: the variable, e.g. WSD_PING_INTERVAL
	file   string // fromFile: the path of the config file
	line   int    // fromFile: the line of the key
	key    string // fromFile: the key as written, e.g. ping_interval
}

// String is the source as a reader would look for it: "WSD_PING_INTERVAL"
// or "wsd.yaml:12: ping_interval"; "" for the command line and defaults.
func (s source) String() string {
	switch s.origin {
	case fromEnv:
		return s.env
	case fromFile:
		return fmt.Sprintf("%s:%d: %s", s.file, s.line, s.key)
	}
	return ""
}

// settingError is a value wsd refuses for the setting named by flag (a
// flag name, without the dash).
type settingError struct {
	flag string
	from source
	err  error
}

// Error names the setting as it was given: "-ping-interval: invalid
// duration ..." for the command line, "-ping-interval: invalid duration
// "abc" (from WSD_PING_INTERVAL): want ..." for the environment, and
// "wsd.yaml:12: ping_interval: invalid duration ..." for the file.
func (e *settingError) Error() string {
	switch e.from.origin {
	case fromFile:
		return e.from.String() + ": " + e.err.Error()
	case fromEnv:
		var ve *valueError
		if errors.As(e.err, &ve) {
			return fmt.Sprintf("-%s: invalid %s %q (from %s): %s", e.flag, ve.kind, ve.value, e.from.env, ve.want)
		}
		return fmt.Sprintf("-%s (from %s): %v", e.flag, e.from.env, e.err)
	}
	return "-" + e.flag + ": " + e.err.Error()
}

// envPrefix starts the environment variables that set wsd's flags.
const envPrefix = "WSD_"

// envName is the environment variable of a flag: "ping-interval" is
// WSD_PING_INTERVAL.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// fromEnvironment picks the values of fs's flags out of environ (KEY=value
// entries, as os.Environ returns them). It returns a warning for each WSD_
// variable that names no flag, since that is most likely a misspelling.
func fromEnvironment(fs *flag.FlagSet, environ []string) (map[string]string, []string) {
	byEnv := map[string]string{}
	var envNames []string
	fs.VisitAll(func(f *flag.Flag) {
		byEnv[envName(f.Name)] = f.Name
		envNames = append(envNames, envName(f.Name))
	})
	vals := map[string]string{}
	var warnings []string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, envPrefix) {
			continue
		}
		if name, ok := byEnv[k]; ok {
			vals[name] = v
			continue
		}
		warnings = append(warnings, fmt.Sprintf("environment variable %s is not a wsd setting and is ignored%s", k, didYouMean(k, envNames)))
	}
	return vals, warnings
}

// fileValue is the text of one setting in the config file, and where.
type fileValue struct {
	text string
	from source
}

// parseConfigFile reads data, the config file at path: a YAML mapping
// whose keys are flag names written with underscores. A list is a
// comma-separated value, for the flags that take lists; a null value (a key
// with nothing after it) is no value. It returns the values by flag name,
// and every problem of the file.
func parseConfigFile(path string, data []byte, fs *flag.FlagSet) (map[string]fileValue, []error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if err == io.EOF { // an empty file, or only comments
			return nil, nil
		}
		return nil, []error{fmt.Errorf("%s: %v", path, err)}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, []error{fmt.Errorf("%s:%d: want a mapping of settings, like ping_interval: 20s", path, root.Line)}
	}
	var keys []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			keys = append(keys, strings.ReplaceAll(f.Name, "-", "_"))
		}
	})
	out := map[string]fileValue{}
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		from := source{origin: fromFile, file: path, line: k.Line, key: k.Value}
		name := strings.ReplaceAll(k.Value, "_", "-")
		fl := fs.Lookup(name)
		if fl == nil || name == "config" {
			errs = append(errs, fmt.Errorf("%s: unknown key%s", from, didYouMean(k.Value, keys)))
			continue
		}
		if prev, dup := out[name]; dup {
			errs = append(errs, fmt.Errorf("%s: given twice (first on line %d)", from, prev.from.line))
			continue
		}
		text, isNull, err := yamlText(v, isList(fl.Value))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", from, err))
			continue
		}
		if !isNull {
			out[name] = fileValue{text, from}
		}
	}
	return out, errs
}

// yamlText is the setting text of a YAML value: a scalar as written, or a
// list of scalars joined with commas where list is true. isNull reports a
// null value.
func yamlText(v *yaml.Node, list bool) (text string, isNull bool, err error) {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!null":
		return "", true, nil
	case v.Kind == yaml.ScalarNode:
		return v.Value, false, nil
	case v.Kind == yaml.SequenceNode && list:
		items := make([]string, len(v.Content))
		for i, it := range v.Content {
			if it.Kind != yaml.ScalarNode {
				return "", false, fmt.Errorf("line %d: want a list of plain values", it.Line)
			}
			items[i] = it.Value
		}
		return strings.Join(items, ","), false, nil
	case v.Kind == yaml.SequenceNode:
		return "", false, errors.New("want a single value, not a list")
	}
	return "", false, errors.New("want a value, not a mapping")
}

// isList reports whether a flag value takes a comma-separated list.
func isList(v flag.Value) bool {
	t, ok := v.(*textValue)
	return ok && t.list
}

// didYouMean returns " (did you mean X?)" for the candidate closest to
// name, if one is close enough to be a likely misspelling, or "".
func didYouMean(name string, candidates []string) string {
	best, bestDist := "", len(name)/3+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
