//go:build !race

package main

// bcryptCost is the cost of the bcrypt hash of TestAuthBcryptOffLoop.
const bcryptCost = 12
