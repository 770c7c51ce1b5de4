// sparkgate's password provider for the Spark Thrift Servers it runs
// (hive.server2.authentication=CUSTOM, hive.server2.custom.authentication.class=sparkgate.DriverAuth).
// A driver takes a connection only with its own secret, which sparkgate generated for it and
// handed over in the environment (SPARKGATE_DRIVER_SECRET); without one it takes none. Clients
// reach a driver only through sparkgate, which authenticated them and names their user with
// hive.server2.proxy.user. Compiled by sparkgate with the driver's own Spark (launcher/jvm.rs).
package sparkgate

import java.nio.charset.StandardCharsets.UTF_8
import java.security.MessageDigest
import javax.security.sasl.AuthenticationException

import org.apache.hive.service.auth.PasswdAuthenticationProvider

class DriverAuth extends PasswdAuthenticationProvider {
  override def Authenticate(user: String, password: String): Unit = {
    val given = Option(password).getOrElse("").getBytes(UTF_8)
    // Constant time: the answer's timing says nothing of how much of a guess was right.
    if (DriverAuth.secret.isEmpty || !MessageDigest.isEqual(DriverAuth.secret, given)) {
      throw new AuthenticationException(
        "this Spark Thrift Server takes connections from sparkgate only; connect through sparkgate")
    }
  }
}

object DriverAuth {
  // Read once: Hive makes a provider per login.
  private lazy val secret: Array[Byte] =
    Option(System.getenv("SPARKGATE_DRIVER_SECRET")).getOrElse("").trim.getBytes(UTF_8)
}
