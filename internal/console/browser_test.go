package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/ordersd/ordersd/gen/orders/v1"
	"github.com/ordersd/ordersd/internal/auth"
	"github.com/ordersd/ordersd/internal/testsupport"
	"github.com/ordersd/ordersd/internal/testsupport/testnode"
)

// screenshotsEnv names the directory the browser tests write their
// screenshots to; by default testdata/screenshots beside this file
// (ignored by git), which CI keeps with the test output.
const screenshotsEnv = "ORDERSD_CONSOLE_SCREENSHOTS"

// chromiumEnv names the Chromium (or Chrome) binary; by default Debian's
// /usr/bin/chromium, then chromium or google-chrome on $PATH.
const chromiumEnv = "ORDERSD_CHROMIUM"

// chromium finds the browser. Without one the browser tests skip, except
// in CI (CI=true), where a missing browser is a failure: .ci/run installs it.
func chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(chromiumEnv); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no Chromium: install Debian's chromium (apt-get install chromium) or set $%s", chromiumEnv)
	}
	t.Skipf("no Chromium found (apt-get install chromium, or set $%s); CI=true makes this a failure", chromiumEnv)
	return ""
}

// page is one browser tab on a node's console.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string // http://<node's HTTP port>

	mu     sync.Mutex
	errors []string // uncaught exceptions and console errors of the page
}

// openBrowser starts a headless Chromium with one tab, stopped when the test ends.
func openBrowser(t *testing.T, base string) *page {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root in a container
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	p := &page{t: t, ctx: ctx, base: base}
	if err := chromedp.Do(ctx); err != nil {
		cancelTab()
		cancelAlloc()
		t.Fatalf("start Chromium: %v", err)
	}
	// Uncaught exceptions, unhandled rejections and console.error calls of
	// the page fail the test. Entries of the browser's own log (a refused
	// connection while ordersd restarts) do not: they have no arguments.
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.IsException() || (m.Type == chromedp.ConsoleError && len(m.Args) > 0) {
				p.mu.Lock()
				p.errors = append(p.errors, m.String())
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		<-listening
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, e := range p.errors {
			t.Errorf("the page reported: %s", e)
		}
	})
	return p
}

// fail ends the test with the page's main element, to see what it showed.
func (p *page) fail(format string, args ...any) {
	p.t.Helper()
	html, _ := chromedp.Run(p.ctx, chromedp.OuterHTML(chromedp.CSS("main")))
	p.t.Fatalf(format+"\nthe page's main now:\n%s", append(args, html)...)
}

// run runs browser actions, bounded by d.
func (p *page) run(d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.fail("browser: %v", err)
	}
}

// open navigates to a console address ("#/board") and waits for its heading.
func (p *page) open(hash string) {
	p.t.Helper()
	p.run(20*time.Second, chromedp.Navigate(p.base+"/"+hash), chromedp.WaitVisible(chromedp.CSS("main h1")))
}

// waitFor polls a JavaScript condition until it is true.
func (p *page) waitFor(what, js string, d time.Duration) {
	p.t.Helper()
	p.run(d+time.Second, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d))(ctx, t)
		if err != nil {
			err = fmt.Errorf("waiting for %s (%s): %w", what, js, err)
		}
		return chromedp.Void{}, err
	})
}

// eval evaluates JavaScript into out (a pointer).
func eval[T any](p *page, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.fail("evaluate %s: %v", js, err)
	}
	return v
}

// text is the text of the first element matching a CSS selector.
func (p *page) text(sel string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		p.fail("text of %s: %v", sel, err)
	}
	return s
}

func (p *page) click(sel string) {
	p.t.Helper()
	p.run(10*time.Second, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// screenshotDir is where screenshots go: $ORDERSD_CONSOLE_SCREENSHOTS, or
// testdata/screenshots.
func screenshotDir(t testing.TB) string {
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		dir = filepath.Join("testdata", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot writes the page at 390 and 1280 px wide, as <name>-390.png
// and <name>-1280.png, and leaves it at 1280.
func (p *page) screenshot(name string) {
	p.t.Helper()
	dir := screenshotDir(p.t)
	for _, width := range []int64{390, 1280} {
		ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
		err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 900), chromedp.Sleep(150*time.Millisecond)) // and let it lay out
		var png []byte
		if err == nil {
			png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		}
		cancel()
		if err != nil {
			p.fail("screenshot %s at %d px: %v", name, width, err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, width)), png, 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
}

// boardStats are the board's own figures (window.ordersdBoard()).
type boardStats struct {
	Events     int     `json:"events"`
	Last       string  `json:"last"`
	Rate       int     `json:"rate"`
	DelayP50   float64 `json:"delayP50"`
	DelayP99   float64 `json:"delayP99"`
	Frames     int     `json:"frames"`
	Reconnects int     `json:"reconnects"`
}

func (p *page) board() boardStats {
	p.t.Helper()
	return eval[boardStats](p, `ordersdBoard()`)
}

// api is a gRPC client of the node, for what the test does behind the page's back.
type api struct {
	orders ordersv1.OrderServiceClient
	queues ordersv1.QueueServiceClient
	token  string
}

func dial(t *testing.T, n *testnode.Node, token string) *api {
	t.Helper()
	conn, err := grpc.NewClient(n.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &api{orders: ordersv1.NewOrderServiceClient(conn), queues: ordersv1.NewQueueServiceClient(conn), token: token}
}

func (a *api) ctx(t *testing.T) context.Context {
	ctx := testsupport.Context(t, 20*time.Second)
	if a.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.token)
	}
	return ctx
}

func (a *api) create(t *testing.T, customer string) *ordersv1.Order {
	t.Helper()
	res, err := a.orders.CreateOrder(a.ctx(t), &ordersv1.CreateOrderRequest{
		CustomerId:   customer,
		CurrencyCode: "EUR",
		Items:        []*ordersv1.LineItem{{Sku: "MUG-1", Quantity: 2, UnitPriceMinor: 900}, {Sku: "TEA-7", Quantity: 1, UnitPriceMinor: 450}},
	})
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return res.GetOrder()
}

// waitStatus waits until the order has reached st (the review runs apart).
func (a *api) waitStatus(t *testing.T, id string, st ordersv1.OrderStatus) *ordersv1.Order {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := a.orders.GetOrder(a.ctx(t), &ordersv1.GetOrderRequest{OrderId: id})
		if err == nil && res.GetOrder().GetStatus() == st {
			return res.GetOrder()
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s did not reach %s: %v %v", id, st, res.GetOrder().GetStatus(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// card is the CSS selector of an order's card in a board column.
func card(status, id string) string {
	return fmt.Sprintf(`.column[data-status=%q] li[data-order=%q]`, status, id)
}

func js(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// The whole console in a real browser against a real node: the board
// live (a new order appears and moves on by the built-in review), paused
// and resumed after a reload with nothing missed, and across a restart of
// ordersd; an order's page with its history, paid from the page, and a
// conflict shown as such; the orders list; queues with a dead letter made
// by a TERM, redriven from the page and delivered again; health.
func TestConsoleInABrowser(t *testing.T) {
	n := testnode.StartT(t, testnode.Options{Review: true, HTTP: true, Console: true})
	c := dial(t, n, "")
	p := openBrowser(t, "http://"+n.HTTPAddr())

	// The board is live; an order created through the API appears in
	// CREATED (its count) and moves to APPROVED by the review.
	p.open("#/board")
	p.waitFor("the board to be live", `document.querySelector(".board-status").dataset.state === "live"`, 20*time.Second)
	o := c.create(t, "alice")
	p.waitFor("the order in APPROVED", js(`!!document.querySelector(%q)`, card("APPROVED", o.GetOrderId())), 20*time.Second)
	if got := p.text(`.column[data-status="CREATED"] .count`); got != "1" {
		t.Errorf("CREATED count %q, want 1 (the created event)", got)
	}
	if got := p.text(`.column[data-status="APPROVED"] .count`); got != "1" {
		t.Errorf("APPROVED count %q, want 1", got)
	}
	createdCards := eval[int](p, js(`document.querySelectorAll(%q).length`, `li[data-order="`+o.GetOrderId()+`"]`))
	if createdCards != 1 {
		t.Errorf("the order has %d cards on the board, want 1 (in its latest column)", createdCards)
	}

	// Pause; orders stored meanwhile are not shown; a reload of the tab
	// keeps the pause and the position; Resume shows exactly those events.
	p.click("#board-pause")
	p.waitFor("the board to pause", `document.querySelector(".board-status").dataset.state === "paused"`, 5*time.Second)
	before := p.board()
	var whilePaused []*ordersv1.Order
	for range 2 {
		o := c.create(t, "bob")
		c.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_APPROVED)
		whilePaused = append(whilePaused, o)
	}
	time.Sleep(300 * time.Millisecond)
	if s := p.board(); s.Events != before.Events {
		t.Fatalf("paused, the board showed %d events more", s.Events-before.Events)
	}
	p.run(20*time.Second, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("main h1")))
	p.waitFor("the pause to survive a reload", `document.querySelector(".board-status").dataset.state === "paused"`, 5*time.Second)
	if got := p.text(".board-status"); !strings.Contains(got, "last sequence "+before.Last) {
		t.Errorf("after a reload the board says %q, want its position %s", got, before.Last)
	}
	p.screenshot("board-paused")
	// Resume from the keyboard: focus the button and press Enter.
	p.run(10*time.Second, chromedp.Focus(chromedp.CSS("#board-pause")), chromedp.KeyEvent("\r"))
	for _, o := range whilePaused {
		p.waitFor("an order stored while paused", js(`!!document.querySelector(%q)`, card("APPROVED", o.GetOrderId())), 20*time.Second)
	}
	time.Sleep(300 * time.Millisecond)
	if s := p.board(); s.Events != 4 { // the reload cleared the counts; two created, two approved since
		t.Errorf("after resuming the board showed %d events, want the 4 stored while paused", s.Events)
	}

	// ordersd restarts while the board is open: the board reconnects from
	// its position, and shows the events stored after the restart, each once.
	before = p.board()
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	p.waitFor("the board to see the node gone", `["reconnecting","connecting"].includes(document.querySelector(".board-status").dataset.state)`, 20*time.Second)
	if err := n.Restart(); err != nil {
		t.Fatal(err)
	}
	afterRestart := c.create(t, "carol") // possibly before the board is back: it must not be missed
	c.waitStatus(t, afterRestart.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_APPROVED)
	p.waitFor("the order created after the restart", js(`!!document.querySelector(%q)`, card("APPROVED", afterRestart.GetOrderId())), 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	after := p.board()
	if after.Events != before.Events+2 || after.Reconnects <= before.Reconnects {
		t.Errorf("across the restart: %d events shown after %d, %d reconnects after %d; want 2 events more and a reconnect", after.Events, before.Events, after.Reconnects, before.Reconnects)
	}
	p.screenshot("board")

	// The customer filter: only carol's events from then on.
	p.run(10*time.Second, chromedp.SetValue(chromedp.CSS("#board-customer"), "carol"), chromedp.Click(chromedp.CSS(`.controls button[type="submit"]`), chromedp.NodeVisible))
	p.waitFor("the filtered board", `document.querySelector(".board-status").textContent.startsWith("live · customer carol")`, 20*time.Second)
	if got := eval[string](p, `location.hash`); got != "#/board?customer=carol" {
		t.Errorf("the filtered board's address is %q, want #/board?customer=carol", got)
	}
	c.create(t, "erin")
	carols := c.create(t, "carol")
	p.waitFor("carol's new order", js(`!!document.querySelector(%q)`, card("APPROVED", carols.GetOrderId())), 20*time.Second)
	if n := eval[int](p, `document.querySelectorAll(".card").length`); n != 1 {
		t.Errorf("the board filtered on carol shows %d cards, want her 1", n)
	}
	if s := p.board(); s.Events != 2 {
		t.Errorf("the board filtered on carol showed %d events, want her 2", s.Events)
	}
	eval[string](p, `document.querySelector("#board-customer").value = ""`)
	p.run(10*time.Second, chromedp.Click(chromedp.CSS(`.controls button[type="submit"]`), chromedp.NodeVisible))
	p.waitFor("the board on every customer", `document.querySelector(".board-status").textContent.startsWith("live · all customers")`, 20*time.Second)
	afterRestart = c.create(t, "frank")
	p.waitFor("frank's order", js(`!!document.querySelector(%q)`, card("APPROVED", afterRestart.GetOrderId())), 20*time.Second)

	// The order's page, opened from its card: state, lines, history; pay
	// it from the page.
	o = afterRestart
	p.click(card("APPROVED", o.GetOrderId()) + " a")
	p.waitFor("the order page", `document.querySelector("#order-status")?.textContent === "APPROVED"`, 20*time.Second)
	history := eval[[]string](p, `[...document.querySelectorAll("#order-history li")].map(li => li.dataset.status)`)
	if strings.Join(history, ",") != "CREATED,APPROVED" {
		t.Errorf("history %v, want CREATED,APPROVED", history)
	}
	if got := p.text("main table tfoot td"); !strings.Contains(got, "22.50") {
		t.Errorf("total %q, want €22.50", got)
	}
	p.screenshot("order")
	p.click(`form[data-action="pay"] button`)
	p.waitFor("the order paid", `document.querySelector("#order-status")?.textContent === "PAID"`, 20*time.Second)
	history = eval[[]string](p, `[...document.querySelectorAll("#order-history li")].map(li => li.dataset.status)`)
	if strings.Join(history, ",") != "CREATED,APPROVED,PAID" {
		t.Errorf("history after paying %v, want CREATED,APPROVED,PAID", history)
	}
	if got := c.waitStatus(t, o.GetOrderId(), ordersv1.OrderStatus_ORDER_STATUS_PAID); got.GetRevision() == 0 {
		t.Fatal("no revision")
	}

	// A change behind the page's back: its action fails with ABORTED,
	// says so, and offers a reload that shows the order as it is.
	other := whilePaused[0]
	p.open("#/order/" + other.GetOrderId())
	p.waitFor("the other order", `document.querySelector("#order-status")?.textContent === "APPROVED"`, 20*time.Second)
	if _, err := c.orders.CancelOrder(c.ctx(t), &ordersv1.CancelOrderRequest{OrderId: other.GetOrderId(), Reason: "changed behind the page"}); err != nil {
		t.Fatal(err)
	}
	p.click(`form[data-action="pay"] button`)
	p.waitFor("the conflict", `document.querySelector(".problem")?.dataset.code === "10"`, 20*time.Second)
	if got := p.text(".problem"); !strings.Contains(got, "The order changed (ABORTED)") || !strings.Contains(got, "expected") {
		t.Errorf("the conflict reads %q; want the title and the API's message", got)
	}
	p.screenshot("order-conflict")
	p.click(".problem button")
	p.waitFor("the reloaded order", `document.querySelector("#order-status")?.textContent === "CANCELLED"`, 20*time.Second)

	// Orders: by customer, and by status.
	p.open("#/orders?customer=bob")
	p.waitFor("bob's orders", `document.querySelectorAll("#orders-results tbody tr").length === 2`, 20*time.Second)
	p.open("#/orders")
	p.run(10*time.Second, chromedp.SetValue(chromedp.CSS("#orders-status"), "PAID"))
	p.click(`main form button[type="submit"]`)
	p.waitFor("the paid orders", js(`(() => { const rows = document.querySelectorAll("#orders-results tbody tr"); return rows.length === 1 && rows[0].textContent.includes(%q) })()`, o.GetOrderId()), 20*time.Second)
	p.screenshot("orders")

	// A dead letter: a client terminates an event of its work queue.
	const consumer = "console-billing"
	term := consumeOne(t, c, consumer)
	if _, err := c.orders.AckOrders(c.ctx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: term.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_TERM, Reason: "card declined"}}}); err != nil {
		t.Fatal(err)
	}
	p.open("#/queues")
	p.waitFor("the dead letter on the queues page", js(`document.querySelector('tr[data-consumer=%q] [data-field="dead-letters"]')?.textContent.startsWith("1")`, consumer), 20*time.Second)
	if got := p.text(`tr[data-consumer="order-review"] th`); !strings.Contains(got, "reserved") {
		t.Errorf("order-review reads %q, want it marked reserved", got)
	}
	reviewButtons := eval[int](p, `document.querySelectorAll('tr[data-consumer="order-review"] button').length`)
	if reviewButtons != 0 {
		t.Errorf("order-review has %d buttons; it cannot be changed or deleted", reviewButtons)
	}
	p.screenshot("queues")

	p.click(js(`tr[data-consumer=%q] [data-field="dead-letters"] a`, consumer))
	p.waitFor("the dead letter", `document.querySelectorAll("#dead-letters tr[data-dead-letter]").length === 1`, 20*time.Second)
	if got := p.text("#dead-letters tbody tr"); !strings.Contains(got, "terminated by a client: card declined") {
		t.Errorf("the dead letter reads %q; want its reason", got)
	}
	p.screenshot("dead-letters")
	p.click(`#dead-letters tbody tr button`) // Redrive
	p.waitFor("the redrive", `document.querySelector("#dl-result .done")?.textContent.startsWith("Redriven to")`, 20*time.Second)
	p.waitFor("no dead letters left", `document.querySelectorAll("#dead-letters tr[data-dead-letter]").length === 0`, 20*time.Second)
	again := consumeOne(t, c, consumer)
	if again.GetEvent().GetSequence() != term.GetEvent().GetSequence() {
		t.Errorf("after the redrive %s got event %d, want the dead letter's %d again", consumer, again.GetEvent().GetSequence(), term.GetEvent().GetSequence())
	}
	if _, err := c.orders.AckOrders(c.ctx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: again.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_ACK}}}); err != nil {
		t.Fatal(err)
	}

	// Settings: change max deliveries from the page.
	p.open("#/queues")
	p.click(js(`tr[data-consumer=%q] button:not(.danger)`, consumer))
	p.run(10*time.Second, chromedp.SetValue(chromedp.CSS("#max_deliveries"), "5"), chromedp.Click(chromedp.CSS(`.settings button[type="submit"]`), chromedp.NodeVisible))
	p.waitFor("the new settings", js(`document.querySelector('tr[data-consumer=%q] [data-label="Settings"]')?.textContent.includes("5 deliveries")`, consumer), 20*time.Second)
	if got, err := c.queues.GetConsumer(c.ctx(t), &ordersv1.GetConsumerRequest{Consumer: consumer}); err != nil || got.GetConsumer().GetMaxDeliveries() != 5 {
		t.Errorf("after the update: max deliveries %d, %v; want 5", got.GetConsumer().GetMaxDeliveries(), err)
	}
	// A bad value is refused by the API, and its message is shown.
	p.click(js(`tr[data-consumer=%q] button:not(.danger)`, consumer))
	p.run(10*time.Second, chromedp.SetValue(chromedp.CSS("#ack_wait"), "0.5"), chromedp.Click(chromedp.CSS(`.settings button[type="submit"]`), chromedp.NodeVisible))
	p.waitFor("the refusal of a bad ack wait", `document.querySelector(".settings .problem")?.dataset.code === "3"`, 20*time.Second)
	if got := p.text(".settings .problem"); !strings.Contains(got, "ack_wait") {
		t.Errorf("the refusal reads %q; want the API's message naming ack_wait", got)
	}
	p.click(`.settings button[type="button"]`) // Close

	// Purge: two more dead letters, purged together after a confirmation.
	for range 2 {
		d := consumeOne(t, c, consumer)
		if _, err := c.orders.AckOrders(c.ctx(t), &ordersv1.AckOrdersRequest{Acks: []*ordersv1.Ack{{AckToken: d.GetAckToken(), Action: ordersv1.AckAction_ACK_ACTION_TERM, Reason: "bad address"}}}); err != nil {
			t.Fatal(err)
		}
	}
	p.open("#/dead-letters?consumer=" + consumer)
	p.waitFor("two dead letters", `document.querySelectorAll("#dead-letters tr[data-dead-letter]").length === 2`, 20*time.Second)
	p.click(`.controls button.danger`) // Purge all…
	p.click("#confirm-purge")
	p.waitFor("the purge", `document.querySelector("#dl-result .done")?.textContent.startsWith("Purged 2")`, 20*time.Second)
	if res, err := c.queues.ListDeadLetters(c.ctx(t), &ordersv1.ListDeadLettersRequest{Consumer: consumer}); err != nil || len(res.GetDeadLetters()) != 0 {
		t.Errorf("after the purge: %d dead letters, %v", len(res.GetDeadLetters()), err)
	}

	// Deleting a consumer asks first.
	p.open("#/queues")
	p.click(js(`tr[data-consumer=%q] button.danger`, consumer))
	p.waitFor("the confirmation", `!!document.querySelector("#confirm-delete")`, 5*time.Second)
	p.screenshot("queues-delete")
	p.click("#confirm-delete")
	p.waitFor("the consumer gone", js(`!document.querySelector('tr[data-consumer=%q]') && !!document.querySelector('tr[data-consumer="order-review"]')`, consumer), 20*time.Second)
	if _, err := c.queues.GetConsumer(c.ctx(t), &ordersv1.GetConsumerRequest{Consumer: consumer}); status.Code(err) != codes.NotFound {
		t.Errorf("GetConsumer after the delete: %v, want NOT_FOUND", err)
	}

	p.open("#/health")
	p.waitFor("health", `document.querySelector("#health-node")?.textContent === "SERVING"`, 20*time.Second)
	p.screenshot("health")

	// An address can ask for every stored event: 7 orders created, all
	// approved by the review, one paid, one cancelled.
	p.open("#/board?from=start")
	p.waitFor("the replayed board", `document.querySelector(".board-status").textContent.includes("last sequence")`, 20*time.Second)
	want := map[string]string{"CREATED": "7", "APPROVED": "7", "PAID": "1", "SHIPPED": "0", "REJECTED": "0", "CANCELLED": "1"}
	p.waitFor("every stored event", `document.querySelector('.column[data-status="CANCELLED"] .count').textContent === "1"`, 20*time.Second)
	for st, n := range want {
		if got := p.text(fmt.Sprintf(`.column[data-status=%q] .count`, st)); got != n {
			t.Errorf("replayed, %s counts %s events, want %s", st, got, n)
		}
	}
	p.screenshot("board-replayed")
}

// consumeOne receives one event of a work queue over ConsumeOrders (every
// event from the first stored), and leaves it unacknowledged.
func consumeOne(t *testing.T, c *api, consumer string) *ordersv1.ConsumeOrdersResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(c.ctx(t))
	defer cancel()
	stream, err := c.orders.ConsumeOrders(ctx, &ordersv1.ConsumeOrdersRequest{Consumer: consumer, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	for {
		res, err := stream.Recv()
		if err != nil {
			t.Fatalf("ConsumeOrders %s: %v", consumer, err)
		}
		if res.GetEvent() != nil {
			return res
		}
	}
}

// With authentication on, the console asks for a token; a reader's token
// gets the board, and the queue admin refuses it, saying why.
func TestConsoleWithAuthentication(t *testing.T) {
	dir := t.TempDir()
	tokens := testsupport.WriteFile(t, dir, "tokens.json", []byte(`{"tokens": [
		{"identity": "reader", "token": "reader-secret", "permissions": ["read", "watch"]},
		{"identity": "shop", "token": "shop-secret", "permissions": ["write", "read"]}
	]}`))
	n := testnode.StartT(t, testnode.Options{Review: true, HTTP: true, Console: true, Auth: auth.Config{TokensFile: tokens}})
	shop := dial(t, n, "shop-secret")
	p := openBrowser(t, "http://"+n.HTTPAddr())

	p.open("#/board")
	p.waitFor("the request for a token", `document.querySelector(".problem")?.dataset.code === "16"`, 20*time.Second)
	p.screenshot("auth-needed")
	p.click(".problem button") // Enter a token
	p.run(10*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), "reader-secret"), chromedp.Click(chromedp.CSS(`.token button[type="submit"]`), chromedp.NodeVisible))
	p.waitFor("the board live with the reader's token", `document.querySelector(".board-status").dataset.state === "live"`, 20*time.Second)
	if got := p.text("#token-state"); got != "token set" {
		t.Errorf("token state %q", got)
	}
	stored := eval[string](p, `sessionStorage.getItem("ordersd.console.token") + "|" + (localStorage.length === 0)`)
	if stored != "reader-secret|true" {
		t.Errorf("token kept as %q; want it in sessionStorage only", stored)
	}
	o := shop.create(t, "dave")
	p.waitFor("the order on the reader's board", js(`!!document.querySelector(%q)`, card("APPROVED", o.GetOrderId())), 20*time.Second)

	p.open("#/queues")
	p.waitFor("the refusal", `document.querySelector(".problem")?.dataset.code === "7"`, 20*time.Second)
	if got := p.text(".problem"); !strings.Contains(got, "Not allowed (PERMISSION_DENIED)") || !strings.Contains(got, "admin") {
		t.Errorf("the refusal reads %q; want the title and the API's message naming the permission", got)
	}
	p.screenshot("auth-refused")

	// Forget token: gone from the tab at once; the next call asks again.
	p.run(10*time.Second, chromedp.Click(chromedp.CSS(".token summary"), chromedp.NodeVisible))
	p.click(`.token button[type="button"]`)
	if got := eval[bool](p, `sessionStorage.getItem("ordersd.console.token") === null`); !got {
		t.Error("Forget token left the token in sessionStorage")
	}
	p.waitFor("the request for a token again", `document.querySelector(".problem")?.dataset.code === "16"`, 20*time.Second)
	p.click(".problem button")
	p.run(10*time.Second, chromedp.SendKeys(chromedp.CSS("#token"), "reader-secret"), chromedp.Click(chromedp.CSS(`.token button[type="submit"]`), chromedp.NodeVisible))
	p.waitFor("the reader's refusal again", `document.querySelector(".problem")?.dataset.code === "7"`, 20*time.Second)

	// The order page reads with the reader's token; the reader may not pay.
	p.open("#/order/" + o.GetOrderId())
	p.waitFor("the order", `document.querySelector("#order-status")?.textContent === "APPROVED"`, 20*time.Second)
	p.click(`form[data-action="pay"] button`)
	p.waitFor("the refusal to pay", `document.querySelector(".problem")?.dataset.code === "7"`, 20*time.Second)
	if got := statusOf(t, shop, o.GetOrderId()); got != ordersv1.OrderStatus_ORDER_STATUS_APPROVED {
		t.Errorf("after the refused payment the order is %s", got)
	}
}

func statusOf(t *testing.T, a *api, id string) ordersv1.OrderStatus {
	t.Helper()
	res, err := a.orders.GetOrder(a.ctx(t), &ordersv1.GetOrderRequest{OrderId: id})
	if err != nil {
		t.Fatal(err)
	}
	return res.GetOrder().GetStatus()
}

// The Health page follows JetStream: a node cut off from its NATS server
// shows NOT_SERVING and says JetStream is not ready, and SERVING again
// once NATS is back.
func TestConsoleHealthFollowsJetStream(t *testing.T) {
	n := testnode.StartShared(t, 1, testnode.Options{HTTP: true, Console: true})[0]
	p := openBrowser(t, "http://"+n.HTTPAddr())
	p.open("#/health")
	p.waitFor("SERVING", `document.querySelector("#health-node")?.textContent === "SERVING"`, 20*time.Second)
	n.CutNATS()
	p.waitFor("NOT_SERVING", `document.querySelector("#health-node")?.textContent === "NOT_SERVING"`, 20*time.Second)
	if got := p.text("#health-jetstream"); !strings.HasPrefix(got, "not ready") {
		t.Errorf("JetStream reads %q with NATS cut off", got)
	}
	p.screenshot("health-not-serving")
	n.RestoreNATS()
	p.waitFor("SERVING again", `document.querySelector("#health-node")?.textContent === "SERVING"`, 30*time.Second)
	if got := p.text(".timeline"); !strings.Contains(got, "node NOT_SERVING") || !strings.Contains(got, "node SERVING") {
		t.Errorf("the log of changes reads %q; want both", got)
	}
}
