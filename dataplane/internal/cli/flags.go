// Package cli reads the serving programs' flags, each of which falls back to an environment
// variable (MODELOPS_ + the flag in upper case, dashes as underscores): pods are configured by
// environment far more often than by arguments. A flag on the command line wins.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Flags wraps a FlagSet with environment defaults, required flags and choices.
type Flags struct {
	Set      *flag.FlagSet
	required []string
	choices  map[string][]string
	problems []string
}

func New(program string) *Flags {
	set := flag.NewFlagSet(program, flag.ContinueOnError)
	return &Flags{Set: set, choices: map[string][]string{}}
}

// EnvName is the variable that supplies a flag's default.
func EnvName(name string) string {
	return "MODELOPS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *Flags) fromEnv(name, fallback string) string {
	if value, ok := os.LookupEnv(EnvName(name)); ok && value != "" {
		return value
	}
	return fallback
}

func (f *Flags) usage(name, help string) string {
	return fmt.Sprintf("%s [env %s]", help, EnvName(name))
}

func (f *Flags) String(name, fallback, help string) *string {
	return f.Set.String(name, f.fromEnv(name, fallback), f.usage(name, help))
}

// Required is a string flag that must be given (on the command line or by its variable).
func (f *Flags) Required(name, help string) *string {
	f.required = append(f.required, name)
	return f.String(name, "", help)
}

// Choice is a string flag limited to the given values.
func (f *Flags) Choice(name, fallback, help string, values ...string) *string {
	f.choices[name] = values
	return f.String(name, fallback, fmt.Sprintf("%s (one of %s)", help, strings.Join(values, ", ")))
}

func (f *Flags) Int(name string, fallback int64, help string) *int64 {
	value := fallback
	if raw := f.fromEnv(name, ""); raw != "" {
		parsed, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			f.problems = append(f.problems, fmt.Sprintf("%s=%q: not an integer", EnvName(name), raw))
		}
		value = parsed
	}
	return f.Set.Int64(name, value, f.usage(name, help))
}

func (f *Flags) Float(name string, fallback float64, help string) *float64 {
	value := fallback
	if raw := f.fromEnv(name, ""); raw != "" {
		parsed, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil {
			f.problems = append(f.problems, fmt.Sprintf("%s=%q: not a number", EnvName(name), raw))
		}
		value = parsed
	}
	return f.Set.Float64(name, value, f.usage(name, help))
}

// Seconds is a float flag read as a duration in seconds.
func Seconds(value float64) time.Duration {
	return time.Duration(value * float64(time.Second))
}

// Parse reads the arguments; the error names the flag at fault.
func (f *Flags) Parse(args []string) error {
	if len(f.problems) > 0 {
		return fmt.Errorf("%s", strings.Join(f.problems, "; "))
	}
	if err := f.Set.Parse(args); err != nil {
		return err
	}
	if f.Set.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(f.Set.Args(), " "))
	}
	for _, name := range f.required {
		if f.Set.Lookup(name).Value.String() == "" {
			return fmt.Errorf("the following argument is required: --%s", name)
		}
	}
	for name, values := range f.choices {
		if got := f.Set.Lookup(name).Value.String(); !slices.Contains(values, got) {
			return fmt.Errorf("--%s: invalid choice %q (choose from %s)", name, got,
				strings.Join(values, ", "))
		}
	}
	return nil
}

// ParseFailed is the exit status for a Parse error: 0 for --help (the usage was printed).
func ParseFailed(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return Fail(err)
}

// Fail reports a fatal start-up error as the Python programs did: "error: …", exit status 2.
func Fail(err error) int {
	fmt.Fprintf(os.Stderr, "error: %v\n", err)
	return 2
}
