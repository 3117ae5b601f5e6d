package auth

import "testing"

// WantPermissions checks id.CanSubscribe and id.CanPublish against the
// answers wanted for each topic.
func WantPermissions(t *testing.T, id *Identity, subscribe, publish map[string]bool) {
	t.Helper()
	for topic, want := range subscribe {
		if got := id.CanSubscribe(topic); got != want {
			t.Errorf("%q CanSubscribe(%q) = %v, want %v", id.Sub, topic, got, want)
		}
	}
	for topic, want := range publish {
		if got := id.CanPublish(topic); got != want {
			t.Errorf("%q CanPublish(%q) = %v, want %v", id.Sub, topic, got, want)
		}
	}
}
