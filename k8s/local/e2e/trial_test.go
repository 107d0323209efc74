package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trialNS is the namespace of the trial; its release is named as the README's TL;DR names it.
const (
	trialNS      = "cineflow-trial"
	trialRelease = "cineflow"
)

// setStringFlag is one value of the `helm install` line `make images` prints.
var setStringFlag = regexp.MustCompile(`--set-string\s+(\S+)`)

// trial is what a new user does with the release's own tooling and nothing else: `make images`
// (ko onto the locally built base image) pushes the four images to the local registry and prints
// the `helm install` line with their values; `helm install cineflow charts/cineflow --set
// devDatabase.enabled=true` plus those values gives a working system, with no MongoDB and no
// Resend key: the chart's seeded admin adds a show, a customer books and pays, the sweeper
// (development mode in this trial case) logs the confirmation e-mail, and the notification
// service reports its ticket SUCCESS. /metrics answers on the metrics Services only.
func (e *env) trial(t *testing.T) {
	began := time.Now()
	ctx := context.Background()

	// make images, as the README says, into this cluster's registry.
	base, err := e.Builder.BaseRef(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mk := exec.CommandContext(ctx, "make", "images", "REGISTRY="+e.Registry.Addr+"/cineflow", "KO_DEFAULTBASEIMAGE="+base,
		"INSECURE=1", "PLATFORMS=linux/amd64")
	mk.Dir = e.root
	// The images are built from the workspace (this test runs with GOWORK=off); no registry
	// credentials of the machine's are needed or read.
	mk.Env = append(os.Environ(), "GOWORK="+filepath.Join(e.root, "go.work"), "DOCKER_CONFIG="+t.TempDir())
	out, err := mk.CombinedOutput()
	if err != nil {
		t.Fatalf("make images: %v\n%s", err, tail(string(out), 40))
	}
	var sets []string
	printed := string(out)
	if i := strings.Index(printed, "helm install"); i >= 0 {
		for _, m := range setStringFlag.FindAllStringSubmatch(printed[i:], -1) {
			sets = append(sets, "--set-string", m[1])
		}
	}
	// registry, repository, tag and digest of each of the four images.
	if len(sets) != 2*4*4 {
		t.Fatalf("make images printed %d --set-string values, want 16 (four images):\n%s", len(sets)/2, tail(printed, 40))
	}
	for _, key := range []string{"core", "notification", "sweeper", "devDatabase"} {
		if !strings.Contains(strings.Join(sets, " "), key+".image.digest=sha256:") {
			t.Errorf("make images printed no digest of %s:\n%s", key, tail(printed, 20))
		}
	}
	e.timed("trial: make images", began)

	// helm install with the trial switch and the printed image values, nothing else.
	began = time.Now()
	args := append([]string{"install", trialRelease, filepath.Join(e.root, "charts", "cineflow"), "--namespace", trialNS,
		"--create-namespace", "--set", "devDatabase.enabled=true"}, sets...)
	notes, err := e.RunHelm(ctx, append(args, "--wait", "--timeout", "8m")...)
	if err != nil {
		t.Fatalf("helm install: %v\npods:%s", err, e.describePodsIn(ctx, trialNS))
	}
	t.Logf("helm %s:\n%s", strings.Join(args, " "), tail(notes, 30))
	for _, want := range []string{"IS NOT FOR PRODUCTION", "NO AUTHENTICATION, NO REPLICATION AND NO BACKUPS", "e-mails are logged, not sent"} {
		if !strings.Contains(notes, want) {
			t.Errorf("the install notes do not say %q", want)
		}
	}
	e.timed("trial: helm install, ready", began)
	defer e.trialUninstall(t)

	// Every pod runs an image make images pushed, by digest.
	pods, err := e.Cluster.Client.CoreV1().Pods(trialNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + trialRelease})
	if err != nil {
		t.Fatal(err)
	}
	components := map[string]bool{}
	for _, p := range pods.Items {
		img := p.Spec.Containers[0].Image
		if !strings.HasPrefix(img, e.Registry.Addr+"/cineflow/cineflow-") || !strings.Contains(img, "@sha256:") {
			t.Errorf("pod %s runs %s, not an image make images pushed to %s", p.Name, img, e.Registry.Addr)
		}
		components[p.Labels["app.kubernetes.io/component"]] = true
	}
	for _, c := range []string{"core", "notification", "devdb"} {
		if !components[c] {
			t.Errorf("no %s pod in the trial (components %v)", c, components)
		}
	}

	// The user's story, as the seeded admin and a new customer.
	began = time.Now()
	core := newAPI(e.serviceURLIn(t, trialNS, trialRelease+"-core", "/mba/api/v1"))
	password := e.secretIn(t, trialNS, trialRelease+"-admin", "admin-password")
	var signin struct{ Token string }
	core.must(t, 200, "POST", "/auth/signin", map[string]any{"email": "admin@cineflow.local", "password": password}, &signin)
	sh := newShowBy(t, core.with("x-access-token", signin.Token), "Trial", 20)
	email := "trial-" + randomHex(3) + "@example.com"
	customer := customerOf(t, core, "tara", email)
	var b booking
	customer.must(t, 201, "POST", "/bookings", sh.booking(2), &b)
	customer.must(t, 200, "POST", "/payments", map[string]any{"bookingId": b.ID, "amount": b.TotalCost}, nil)
	paid := time.Now()

	// The sweeper's dev mailer logs the confirmation within a period of the default schedule
	// (every 2 minutes) plus the sweep.
	var mail devMail
	err = eventually(4*time.Minute, 3*time.Second, func() error {
		m, err := e.devMailerLog(ctx, trialNS, email)
		if err != nil {
			return err
		}
		mail = m
		return nil
	})
	if err != nil {
		t.Fatalf("no sweeper pod logged the confirmation e-mail to %s within 4 minutes of the payment: %v\nsweeper pods:%s",
			email, err, e.describePodsIn(ctx, trialNS))
	}
	t.Logf("the dev mailer logged %q to %v %s after the payment (ticket %s)", mail.Subject, mail.To, time.Since(paid).Round(time.Second), mail.TicketID)
	if !strings.Contains(mail.Subject+"\n"+mail.Text, "Trial") {
		t.Errorf("the e-mail does not name the movie: %+v", mail)
	}
	notify := newAPI(e.serviceURLIn(t, trialNS, trialRelease+"-notification", "/notiservice/api/v1/notifications")).
		with("Authorization", "Bearer "+e.secretIn(t, trialNS, trialRelease+"-notification-token", "notification-api-token"))
	err = eventually(30*time.Second, time.Second, func() error {
		var tk ticket
		r, err := notify.do("GET", "/"+mail.TicketID, nil)
		if err != nil {
			return err
		}
		if r.Status != 200 {
			return fmt.Errorf("GET ticket: %s", r)
		}
		if err := json.Unmarshal(r.Data, &tk); err != nil {
			return err
		}
		if tk.Status != "SUCCESS" {
			return fmt.Errorf("ticket %s is %s", tk.ID, tk.Status)
		}
		return nil
	})
	if err != nil {
		t.Errorf("ticket %s: %v", mail.TicketID, err)
	}

	// /metrics: 404 on the API port, served on the metrics Service's port.
	for _, c := range []struct {
		url  string
		want int
	}{
		{e.serviceURLIn(t, trialNS, trialRelease+"-core", "/metrics"), 404},
		{e.serviceURLIn(t, trialNS, trialRelease+"-core-metrics", "/metrics"), 200},
		{e.serviceURLIn(t, trialNS, trialRelease+"-notification-metrics", "/metrics"), 200},
	} {
		resp, err := httpClient.Get(c.url)
		if err != nil {
			t.Errorf("GET %s: %v", c.url, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s: %d, want %d", c.url, resp.StatusCode, c.want)
		}
	}
	e.timed("trial: booking to its e-mail", began)
}

// devMail is the dev mailer's log record of one e-mail (jobs/sweeper/devmail).
type devMail struct {
	Msg      string   `json:"msg"`
	TicketID string   `json:"ticket_id"`
	To       []string `json:"to"`
	Subject  string   `json:"subject"`
	Text     string   `json:"text"`
}

// devMailerLog finds, in the logs of ns's sweeper pods, the dev mailer's record of an e-mail to.
func (e *env) devMailerLog(ctx context.Context, ns, to string) (devMail, error) {
	pods, err := e.Cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=sweeper"})
	if err != nil {
		return devMail{}, err
	}
	var seen []string
	for _, p := range pods.Items {
		seen = append(seen, fmt.Sprintf("%s %s", p.Name, p.Status.Phase))
		if p.Status.Phase == corev1.PodPending {
			continue
		}
		raw, err := e.Cluster.Client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(strings.NewReader(string(raw)))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m devMail
			if json.Unmarshal(sc.Bytes(), &m) != nil || m.Msg != "email (dev mailer, not sent)" {
				continue
			}
			for _, r := range m.To {
				if r == to {
					return m, nil
				}
			}
		}
	}
	return devMail{}, fmt.Errorf("not logged yet (sweeper pods: %v)", seen)
}

// trialUninstall removes the trial's release and namespace.
func (e *env) trialUninstall(t *testing.T) {
	ctx := context.Background()
	if out, err := e.RunHelm(ctx, "uninstall", trialRelease, "--namespace", trialNS, "--wait", "--timeout", "3m"); err != nil {
		t.Errorf("helm uninstall of the trial: %v\n%s", err, out)
	}
	if err := e.Cluster.Client.CoreV1().Namespaces().Delete(ctx, trialNS, metav1.DeleteOptions{}); err != nil {
		log.Printf("delete namespace %s: %v", trialNS, err)
	}
}

// serviceURLIn is http://<cluster IP>:<first port><path> of a Service of namespace ns.
func (e *env) serviceURLIn(t *testing.T, ns, name, path string) string {
	t.Helper()
	svc, err := e.Cluster.Client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Service %s/%s: %v", ns, name, err)
	}
	return fmt.Sprintf("http://%s:%d%s", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port, path)
}

// secretIn is the value of key in the Secret name of namespace ns.
func (e *env) secretIn(t *testing.T, ns, name, key string) string {
	t.Helper()
	s, err := e.Cluster.Client.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Secret %s/%s: %v", ns, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		t.Fatalf("Secret %s/%s has no %s", ns, name, key)
	}
	return string(v)
}

// describePodsIn summarizes ns's pods for failure messages.
func (e *env) describePodsIn(ctx context.Context, ns string) string { return e.DescribePods(ctx, ns) }
