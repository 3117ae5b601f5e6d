package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// valueError is a setting's text that wsd refuses: what kind of value was
// expected, the text given and what would do.
type valueError struct {
	kind  string // "duration", "size", "mode", ...
	value string
	want  string // "want a Go duration like 20s or 1m"
}

func (e *valueError) Error() string { return fmt.Sprintf("invalid %s %q: %s", e.kind, e.value, e.want) }

// The setting values below are flag.Values bound to a config field. Their
// Set refuses with a *valueError both text that does not parse and values
// out of range, so every check of a single setting happens where its text
// is read, whichever source it comes from.

// textValue is a string setting. If list, it is comma-separated (in the
// config file it may also be a YAML list). check, if not nil, vets it.
type textValue struct {
	p     *string
	list  bool
	check func(string) *valueError
}

func (v *textValue) String() string { return *v.p }

func (v *textValue) Set(s string) error {
	if v.check != nil {
		if err := v.check(s); err != nil {
			return err
		}
	}
	*v.p = s
	return nil
}

// eachItem returns a check of a comma-separated list that applies check to
// each item.
func eachItem(check func(string) *valueError) func(string) *valueError {
	return func(s string) *valueError {
		for _, it := range splitList(s) {
			if err := check(it); err != nil {
				return err
			}
		}
		return nil
	}
}

// oneOf returns a check that accepts only choices, for a setting of kind.
func oneOf(kind string, choices ...string) func(string) *valueError {
	return func(s string) *valueError {
		for _, c := range choices {
			if s == c {
				return nil
			}
		}
		last := len(choices) - 1
		return &valueError{kind, s, "want " + strings.Join(choices[:last], ", ") + " or " + choices[last]}
	}
}

// boolValue is a boolean setting. Besides what strconv.ParseBool takes it
// takes yes/no and on/off, as YAML 1.1 files (and people) write them.
type boolValue struct{ p *bool }

func (v *boolValue) String() string   { return strconv.FormatBool(*v.p) }
func (v *boolValue) IsBoolFlag() bool { return true }

func (v *boolValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "yes", "on":
		*v.p = true
		return nil
	case "no", "off":
		*v.p = false
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return &valueError{"boolean", s, "want true or false (or yes/no, on/off, 1/0)"}
	}
	*v.p = b
	return nil
}

// intValue is an integer setting of kind; ok says which values are
// accepted and want describes them.
type intValue struct {
	p          *int
	kind, want string
	ok         func(int) bool
}

func (v *intValue) String() string { return strconv.Itoa(*v.p) }

func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || !v.ok(n) {
		return &valueError{v.kind, s, v.want}
	}
	*v.p = n
	return nil
}

// durationValue is a timeout or interval: a Go duration, 0 for off.
type durationValue struct{ p *time.Duration }

func (v *durationValue) String() string { return v.p.String() }

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err == nil && d < 0:
		return &valueError{"duration", s, "want 0 (off) or a positive duration like 20s"}
	case err == nil:
		*v.p = d
		return nil
	}
	if _, nerr := strconv.ParseFloat(strings.TrimSpace(s), 64); nerr == nil {
		return &valueError{"duration", s, "want a duration with a unit, like 20s"}
	}
	return &valueError{"duration", s, "want a Go duration like 20s or 1m"}
}

// rateValue is a rate per second: a number, with a fraction if need be;
// 0 is off.
type rateValue struct{ p *float64 }

func (v *rateValue) String() string { return strconv.FormatFloat(*v.p, 'g', -1, 64) }

func (v *rateValue) Set(s string) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return &valueError{"rate", s, "want 0 (off) or a number per second, like 100 or 0.5"}
	}
	*v.p = f
	return nil
}

// sizeValue is a size in bytes between min and max (both inclusive),
// written as a number of bytes or with a KiB, MiB or GiB suffix. A size
// that a field of type int receives has max math.MaxInt.
type sizeValue struct {
	p        *int64
	min, max int64
}

func (v *sizeValue) String() string { return formatSize(*v.p) }

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s, v.max)
	if err == nil && n < v.min {
		err = &valueError{"size", s, fmt.Sprintf("want at least %d bytes", v.min)}
	}
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

// sizeUnits are the suffixes of sizes; KB, MB and GB (and K, M, G) are the
// same binary units as KiB, MiB and GiB. Longer suffixes come first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}}

// parseSize reads a size in bytes, refusing negative sizes and sizes over
// max (so none that overflows int64).
func parseSize(s string, max int64) (int64, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil && !isRangeErr(err) || n < 0 {
		return 0, &valueError{"size", s, "want a number of bytes, or one with a KiB, MiB or GiB suffix, like 16MiB"}
	}
	if err != nil || n > max/mult {
		return 0, &valueError{"size", s, fmt.Sprintf("want at most %d bytes", max)}
	}
	return n * mult, nil
}

// isRangeErr reports whether err is strconv's "value out of range".
func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// formatSize writes n bytes in the largest unit that divides it exactly.
func formatSize(n int64) string {
	for i := 2; i >= 0; i-- { // GiB, MiB, KiB
		if u := sizeUnits[i]; n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// splitList splits a comma-separated value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
