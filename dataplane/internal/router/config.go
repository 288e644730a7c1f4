// Package router is modelops-router: champion/challenger split, shadow mirroring, sticky
// routing, retries kept on their arm and feedback sent to the replica that answered.
package router

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

const APIVersion = "router.modelops.io/v1alpha1"

// Config is version router.modelops.io/v1alpha1 of the router's configuration (the schema of
// serving/modelops_serving/router_config.py, which the operator validates its documents with).
type Config struct {
	APIVersion       string   `yaml:"apiVersion"`
	Kind             *string  `yaml:"kind"`
	Mode             *string  `yaml:"mode"`
	Champion         *Backend `yaml:"champion"`
	Challenger       *Backend `yaml:"challenger"`
	ChallengerWeight *float64 `yaml:"challengerWeight"`
	MirrorPercent    *float64 `yaml:"mirrorPercent"`
	StickyHeader     *string  `yaml:"stickyHeader"`
	Revision         *string  `yaml:"revision"`
}

// Backend is one arm: the base URL of its sidecar (Service).
type Backend struct {
	URL string `yaml:"url"`
}

// Live is a validated configuration, never changed once built: a reload swaps the pointer.
type Live struct {
	Mode             string // split | shadow
	Champion         *url.URL
	Challenger       *url.URL // nil when there is none
	ChallengerWeight float64
	MirrorPercent    float64
	StickyHeader     string
	Revision         string
}

var (
	token    = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
	revision = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// ParseConfig reads a JSON or YAML document (JSON is YAML) into a validated Live; the error
// names the field at fault. Unknown fields are errors, so typos do not pass silently.
func ParseConfig(text []byte) (*Live, error) {
	var document Config
	decoder := yaml.NewDecoder(bytes.NewReader(text))
	decoder.KnownFields(true)
	if err := decoder.Decode(&document); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the configuration must be a mapping with apiVersion, mode, champion…")
		}
		var typeErr *yaml.TypeError
		if errors.As(err, &typeErr) {
			return nil, fmt.Errorf("%s", strings.Join(typeErr.Errors, "; "))
		}
		return nil, fmt.Errorf("not valid JSON or YAML: %v", err)
	}
	if document.APIVersion != APIVersion {
		return nil, fmt.Errorf("apiVersion: '%s' is not supported; expected '%s'",
			document.APIVersion, APIVersion)
	}
	return document.validate()
}

func (c *Config) validate() (*Live, error) {
	var problems []string
	fail := func(field, message string) { problems = append(problems, field+": "+message) }
	live := &Live{Mode: "split", ChallengerWeight: 0, MirrorPercent: 100}
	if c.Kind != nil && *c.Kind != "RouterConfig" {
		fail("kind", "expected 'RouterConfig'")
	}
	if c.Mode != nil {
		if *c.Mode != "split" && *c.Mode != "shadow" {
			fail("mode", "expected 'split' or 'shadow'")
		}
		live.Mode = *c.Mode
	}
	var err error
	if c.Champion == nil {
		fail("champion", "field required")
	} else if live.Champion, err = backendURL(c.Champion.URL); err != nil {
		fail("champion.url", err.Error())
	}
	if c.Challenger != nil {
		if live.Challenger, err = backendURL(c.Challenger.URL); err != nil {
			fail("challenger.url", err.Error())
		}
	}
	percent := func(field string, value *float64, target *float64) {
		if value == nil {
			return
		}
		if !(*value >= 0 && *value <= 100) {
			fail(field, "must be a number from 0 to 100")
		}
		*target = *value
	}
	percent("challengerWeight", c.ChallengerWeight, &live.ChallengerWeight)
	percent("mirrorPercent", c.MirrorPercent, &live.MirrorPercent)
	if c.StickyHeader != nil {
		if len(*c.StickyHeader) > 128 || !token.MatchString(*c.StickyHeader) {
			fail("stickyHeader", "must be a header name (1-128 token characters)")
		}
		live.StickyHeader = *c.StickyHeader
	}
	if c.Revision != nil {
		if len(*c.Revision) > 64 || !revision.MatchString(*c.Revision) {
			fail("revision", "must be 1-64 characters of A-Z a-z 0-9 . _ -")
		}
		live.Revision = *c.Revision
	}
	if c.Challenger == nil && (live.Mode == "shadow" || live.ChallengerWeight > 0) {
		fail("challenger", "required when mode is shadow or challengerWeight > 0")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return live, nil
}

// backendURL is an http:// or https:// URL with a host, an optional port 1-65535, an optional
// path prefix and nothing else.
func backendURL(raw string) (*url.URL, error) {
	parsed, err := url.Parse(raw)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Hostname() == "" ||
		parsed.Opaque != "" {
		return nil, errors.New("must be an http:// or https:// URL with a host")
	}
	if parsed.User != nil {
		return nil, errors.New("must not have a user part")
	}
	if parsed.RawQuery != "" || parsed.Fragment != "" || parsed.ForceQuery {
		return nil, errors.New("must not have a query or fragment")
	}
	if port := parsed.Port(); port != "" {
		if number, err := strconv.Atoi(port); err != nil || number < 1 || number > 65535 {
			return nil, errors.New("port must be from 1 to 65535")
		}
	} else if strings.HasSuffix(parsed.Host, ":") {
		return nil, errors.New("port must be from 1 to 65535")
	}
	if _, _, err := net.SplitHostPort(parsed.Host); err != nil && parsed.Port() != "" {
		return nil, errors.New("must be an http:// or https:// URL with a host")
	}
	parsed.Path = strings.TrimRight(parsed.Path, "/")
	parsed.RawPath = strings.TrimRight(parsed.RawPath, "/")
	return parsed, nil
}

// URLString is the arm's base URL as configured (without a trailing slash).
func URLString(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.String()
}
