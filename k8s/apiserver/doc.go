// Package apiserver holds no code: its module pins the Kubernetes programs that the chart's
// install tests (charts/test) and the local single-node cluster (k8s/local: make cluster,
// make e2e) run.
//
// The module requires k8s.io/kubernetes v1.34.4 and names kube-apiserver,
// kube-controller-manager, kube-scheduler, kubelet and kube-proxy as Go tools (charts/test builds
// only the first two). k8s.io/kubernetes' own go.mod replaces every
// k8s.io/<staging> module with a path inside its repository; those replacements do not apply to
// a module that requires it, so this go.mod replaces each of them with the published v0.34.4
// (the list is copied from k8s.io/kubernetes@v1.34.4's go.mod; when moving to another version,
// copy it again).
//
// The module is not part of go.work, so that Kubernetes' dependencies never mix with the
// services'. Build the binaries with
//
//	cd k8s/apiserver && GOWORK=off go build -o /tmp/k8s/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
//
// (about 3.5 minutes on a 2-core machine the first time). The tests in charts/test do this
// themselves and keep the binaries in a cache directory keyed by this module's go.sum, so later
// runs start at once. They run the binaries with Debian's etcd (package etcd-server) as store;
// no kubelet runs, so no pod starts: the tests check what the API server accepts and what the
// controllers (CronJob, Job, garbage collector) create.
package apiserver
