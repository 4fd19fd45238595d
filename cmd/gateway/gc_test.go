package main

import "testing"

// The gateway collects garbage at GOGC=20 unless the environment says
// otherwise: the default 100 doubled an idle connection's RSS.
func TestDefaultGOGC(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if p, ok := gcPercent(env(nil)); !ok || p != 20 {
		t.Fatalf("without GOGC: %d, %v; want 20, set", p, ok)
	}
	for _, v := range []string{"100", "off", "50"} {
		if _, ok := gcPercent(env(map[string]string{"GOGC": v})); ok {
			t.Fatalf("GOGC=%s in the environment was overridden", v)
		}
	}
}
