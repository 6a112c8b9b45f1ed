package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plcwatch/plcwatch/internal/atomicfile"
)

// Baseline holds what baseline rules learned: per rule, when learning
// started and every tuple seen with when it was first seen. It is saved to
// a file and loaded at start, so that a restart neither re-learns nor
// forgets.
type Baseline struct {
	path  string
	Rules map[string]*LearnedRule `json:"rules"`
	dirty bool
}

// LearnedRule is one rule's baseline.
type LearnedRule struct {
	Fields  []string             `json:"fields"`  // the key fields, in order
	Learn   string               `json:"learn"`   // the learning period when it started
	Started time.Time            `json:"started"` // first event the rule saw
	Keys    map[string]time.Time `json:"keys"`    // "client=10.0.0.9 server=..." -> first seen
}

// NewBaseline returns an empty baseline that Save writes to path ("" keeps
// it in memory).
func NewBaseline(path string) *Baseline {
	return &Baseline{path: path, Rules: map[string]*LearnedRule{}}
}

// LoadBaseline reads the baseline at path; a missing file is an empty
// baseline that Save will create.
func LoadBaseline(path string) (*Baseline, error) {
	b := NewBaseline(path)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if err := json.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("baseline %s: %w", path, err)
	}
	if b.Rules == nil {
		b.Rules = map[string]*LearnedRule{}
	}
	for _, r := range b.Rules {
		if r.Keys == nil {
			r.Keys = map[string]time.Time{}
		}
	}
	return b, nil
}

// Path is the file the baseline is saved to.
func (b *Baseline) Path() string { return b.path }

// Dirty reports whether something was learned since the last Save.
func (b *Baseline) Dirty() bool { return b.dirty }

// Save writes the baseline atomically (a temporary file renamed over the
// old one), if it has a path and changed.
func (b *Baseline) Save() error {
	if b.path == "" || !b.dirty {
		return nil
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(b.path, ".baseline-*", append(data, '\n')); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	b.dirty = false
	return nil
}

// rule returns the learned state of a rule, starting it at t when the rule
// is new or its key fields changed (what was learned no longer fits).
func (b *Baseline) rule(id string, spec *baselineSpec, t time.Time) *LearnedRule {
	lr := b.Rules[id]
	if lr == nil || !slices.Equal(lr.Fields, spec.names) {
		lr = &LearnedRule{Fields: slices.Clone(spec.names), Learn: spec.learn.String(), Started: t.UTC(), Keys: map[string]time.Time{}}
		b.Rules[id] = lr
		b.dirty = true
	}
	return lr
}

// Write prints the baseline for people: per rule, the learning period and
// its state, then every learned tuple with when it was first seen.
func (b *Baseline) Write(w io.Writer, now time.Time) error {
	ids := make([]string, 0, len(b.Rules))
	for id := range b.Rules {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, id := range ids {
		r := b.Rules[id]
		if i > 0 {
			fmt.Fprintln(tw)
		}
		state := "learning"
		if d, err := time.ParseDuration(r.Learn); err == nil && !now.Before(r.Started.Add(d)) {
			state = "learned (alerting on new tuples)"
		}
		fmt.Fprintf(tw, "rule %s: %d tuples of (%s), learning %s from %s: %s\n",
			id, len(r.Keys), strings.Join(r.Fields, ", "), r.Learn, r.Started.Format(time.RFC3339), state)
		keys := make([]string, 0, len(r.Keys))
		for k := range r.Keys {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(tw, "  %s\tfirst seen %s\n", k, r.Keys[k].Format(time.RFC3339))
		}
	}
	return tw.Flush()
}
