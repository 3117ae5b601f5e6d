//go:build race

package main

// bcryptCost is the cost of the bcrypt hash of TestAuthBcryptOffLoop: the
// race detector makes bcrypt about ten times slower.
const bcryptCost = 10
