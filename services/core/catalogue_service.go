package core

// Catalogue is the catalogue service: movies, theatres and shows. (Being built.)
type Catalogue struct{}
