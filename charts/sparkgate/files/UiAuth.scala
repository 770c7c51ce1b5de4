// sparkgate's guard for the Spark UI of the drivers it runs (spark.ui.filters=sparkgate.UiAuth).
// sparkgate reads a statement's progress from the driver's UI (its REST API); nobody else may
// read the UI (it shows every statement's text and plan) or use it (it can kill jobs). A request
// must carry "Authorization: Bearer <hex of SHA-256 of 'sparkgate-ui:' + the driver's secret>",
// the secret sparkgate handed over in the environment (SPARKGATE_DRIVER_SECRET); without a
// secret the UI serves nobody. Compiled by sparkgate with the driver's own Spark (Spark 4+:
// jakarta.servlet), separately from DriverAuth so a Spark without it still gets drivers.
package sparkgate

import java.nio.charset.StandardCharsets.UTF_8
import java.security.MessageDigest

import jakarta.servlet.{Filter, FilterChain, ServletRequest, ServletResponse}
import jakarta.servlet.http.{HttpServletRequest, HttpServletResponse}

class UiAuth extends Filter {
  override def doFilter(req: ServletRequest, res: ServletResponse, chain: FilterChain): Unit = {
    val given = Option(req.asInstanceOf[HttpServletRequest].getHeader("Authorization"))
      .getOrElse("")
      .getBytes(UTF_8)
    // Constant time: the answer's timing says nothing of how much of a guess was right.
    if (UiAuth.expected.nonEmpty && MessageDigest.isEqual(UiAuth.expected, given)) {
      chain.doFilter(req, res)
    } else {
      res.asInstanceOf[HttpServletResponse]
        .sendError(403, "this Spark UI serves sparkgate only")
    }
  }
}

object UiAuth {
  private lazy val expected: Array[Byte] = {
    val secret = Option(System.getenv("SPARKGATE_DRIVER_SECRET")).getOrElse("").trim
    if (secret.isEmpty) Array.emptyByteArray
    else {
      val digest = MessageDigest.getInstance("SHA-256").digest(("sparkgate-ui:" + secret).getBytes(UTF_8))
      ("Bearer " + digest.map(b => f"${b & 0xff}%02x").mkString).getBytes(UTF_8)
    }
  }
}
